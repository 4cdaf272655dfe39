# SPDX-License-Identifier: GPL-3.0-or-later
"""Name the oracle of the evaluation layer at the start, and count what it evaluated at the end."""
import oracle


def pytest_report_header(config):
    name, detail, skip = oracle.choose()
    return "nix-eval oracle: %s" % ("%s, %s" % (name, detail) if name else "none (%s)" % skip)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    import test_nix_eval
    name, detail, skip = oracle.choose()
    done = test_nix_eval.EVALUATED
    if name is None:
        terminalreporter.write_line("nix-eval: SKIPPED, %s" % skip)
        return
    terminalreporter.write_line(
        "nix-eval: %d configurations evaluated with the %s oracle (%s): no failed assertion, no warning, "
        "no path mounted twice (the kit's report)" % (len(done), name, detail))
