# SPDX-License-Identifier: GPL-3.0-or-later
"""The live_iso role through playbooks/build_iso.yml, on localhost, into scratch directories.

iso.nix is checked twice with the real Nix tools: ``nix-instantiate --parse`` (syntax) and an evaluation of the
module function with stub arguments (``config``, ``lib.mkForce``, ``modulesPath``, a ``pkgs`` holding exactly the
expected attribute paths), whose JSON is compared with what the variables asked for. A missing package attribute
or an injected attribute makes the evaluation fail or differ, so these checks can fail.

There is no nixpkgs on this machine: the build step is checked to stop with its "nixpkgs is missing" message, and
the real ISO build is a visible skip unless ``<nixpkgs>`` resolves.
"""
import json
import os
import shutil
import stat
import subprocess

import pytest
import yaml

from conftest import HERE, run_playbook

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAYBOOK = os.path.join(REPO, "playbooks", "build_iso.yml")
with open(os.path.join(REPO, "roles", "live_iso", "defaults", "main.yml"), encoding="utf-8") as _f:
    DEFAULTS = yaml.safe_load(_f)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq1aN0tARealKeyButWellFormed0000000000000 admin@controller"
HOSTILE_KEY = '"; evil = ${builtins.readFile /etc/shadow}; "'
NIX = shutil.which("nix-instantiate")


def _nixpkgs_resolves():
    if NIX is None:
        return False
    proc = subprocess.run([NIX, "--eval", "-E", "<nixpkgs>"], capture_output=True, text=True, check=False)
    return proc.returncode == 0


HAVE_NIXPKGS = _nixpkgs_resolves()
needs_nix = pytest.mark.skipif(NIX is None, reason="nix-instantiate (Debian nix-bin) is needed to check iso.nix")


def task(result, name):
    """The result of the live_iso role's task called ``name``."""
    return result.task("impermanent.nixos.live_iso : " + name)


def build_iso(tmp_path, check=False, **extra):
    extra.setdefault("live_iso_dir", str(tmp_path / "iso"))
    extra.setdefault("live_iso_build", False)
    return run_playbook(PLAYBOOK, extra_vars=extra, check=check)


def nix_parse(path):
    proc = subprocess.run([NIX, "--parse", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _stub_pkgs(names):
    """{"python3": "python3", "python3Packages": {"requests": "python3Packages.requests"}} for dotted names."""
    stub = {}
    for name in names:
        node = stub
        parts = name.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = name
    return stub


def nix_eval(path, packages):
    """Call the iso.nix module function with stub arguments; return the resulting attribute set as JSON."""
    stub = path.parent / "stub-pkgs.json"
    stub.write_text(json.dumps(_stub_pkgs(packages)))
    expr = (
        "import %s { config = {}; modulesPath = \"/m\"; lib = { mkForce = x: { _force = x; }; };"
        " pkgs = builtins.fromJSON (builtins.readFile %s); }" % (path, stub)
    )
    proc = subprocess.run([NIX, "--eval", "--strict", "--json", "-E", expr], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def keys_of(module, user):
    return module["users"]["users"][user]["openssh"]["authorizedKeys"]["keys"]


def test_defaults_are_the_documented_tools():
    # Ansible needs python3 on the ISO; the provision roles run parted, cryptsetup, mkfs.*, sgdisk, git, rsync.
    assert DEFAULTS["live_iso_packages"] == [
        "python3", "git", "rsync", "parted", "cryptsetup", "gptfdisk", "dosfstools", "e2fsprogs"]
    assert DEFAULTS["live_iso_base"] == "minimal"
    assert DEFAULTS["live_iso_build"] is True


def test_argument_specs_mirror_the_defaults():
    options = _spec_options("live_iso")
    assert set(options) == set(DEFAULTS)
    for name, default in DEFAULTS.items():
        assert options[name].get("default") == default, name


@needs_nix
def test_minimal_iso_nix_evaluates_to_what_was_asked(tmp_path):
    extra = ["htop", "python3Packages.requests", "git"]  # git is a default already: listed once
    result = build_iso(tmp_path, live_iso_authorized_keys=[KEY, "ssh-rsa AAAAB3Nz second@key"],
                       live_iso_extra_packages=extra)
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-3000:]
    iso_nix = tmp_path / "iso" / "iso.nix"
    assert task(result, "Render iso.nix")["changed"] is True
    assert task(result, "Record the rendered iso.nix")["ansible_facts"] == {
        "live_iso_nix_file": str(iso_nix), "live_iso_image": ""}
    assert "Rendered %s" % iso_nix in task(result, "Report the live ISO")["msg"]

    nix_parse(iso_nix)
    packages = DEFAULTS["live_iso_packages"] + ["htop", "python3Packages.requests"]
    module = nix_eval(iso_nix, packages)
    assert module["imports"] == ["/m/installer/cd-dvd/installation-cd-minimal.nix"]
    # the baked host key (live_iso_host_key, on by default): the only key sshd uses, copied to /etc/ssh
    key, pub = tmp_path / "iso" / "ssh_host_ed25519_key", tmp_path / "iso" / "ssh_host_ed25519_key.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert module["services"]["openssh"] == {"enable": True, "hostKeys": {"_force": [
        {"type": "ed25519", "path": "/etc/ssh/ssh_host_ed25519_key"}]}}
    etc = module["environment"]["etc"]
    assert etc["ssh/ssh_host_ed25519_key"]["mode"] == "0600"
    assert etc["ssh/ssh_host_ed25519_key.pub"]["mode"] == "0644"
    # the generated files, by path next to iso.nix (Nix copies them into the image's store)
    assert etc["ssh/ssh_host_ed25519_key"]["source"].endswith("-ssh_host_ed25519_key")
    assert "source = ./ssh_host_ed25519_key; mode = \"0600\";" in iso_nix.read_text()
    assert "source = ./ssh_host_ed25519_key.pub; mode = \"0644\";" in iso_nix.read_text()
    # the controller pins it: one known_hosts line for any address, and ssh-keygen reads the same fingerprint
    public = " ".join(pub.read_text().split()[:2])
    assert (tmp_path / "iso" / "known_hosts").read_text() == "* %s\n" % public
    assert task(result, "Record the live system's public host key")["ansible_facts"] == {
        "live_iso_host_public_key": public}
    again = build_iso(tmp_path, live_iso_authorized_keys=[KEY, "ssh-rsa AAAAB3Nz second@key"],
                      live_iso_extra_packages=extra)
    assert again.rc == 0 and again.changed == 0, again.stdout[-3000:]
    assert " ".join(pub.read_text().split()[:2]) == public  # never regenerated
    assert module["services"]["spice-vdagentd"] == {"enable": True}
    assert module["systemd"]["services"]["sshd"]["wantedBy"] == {"_force": ["multi-user.target"]}
    assert module["isoImage"] == {"squashfsCompression": "gzip -Xcompression-level 1"}
    assert keys_of(module, "nixos") == [KEY, "ssh-rsa AAAAB3Nz second@key"]
    assert keys_of(module, "root") == [KEY, "ssh-rsa AAAAB3Nz second@key"]
    assert module["environment"]["systemPackages"] == packages
    assert module["nix"]["settings"]["experimental-features"] == ["nix-command", "flakes"]
    # a second run changing nothing: test_build_path_with_a_nixpkgs_double (render + build)


@needs_nix
@pytest.mark.parametrize("desktop", ["gnome", "plasma6"])
def test_graphical_iso_nix(tmp_path, desktop):
    result = build_iso(tmp_path, live_iso_base="graphical", live_iso_graphical_desktop=desktop,
                       live_iso_authorized_keys=[KEY], live_iso_fast_compression=False,
                       live_iso_spice_vdagent=False, live_iso_root_login=False, live_iso_host_key=False)
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-3000:]
    iso_nix = tmp_path / "iso" / "iso.nix"
    # live_iso_host_key false: the stock keys (made at every boot), no key file, no known_hosts line
    assert not (tmp_path / "iso" / "ssh_host_ed25519_key").exists()
    assert not (tmp_path / "iso" / "known_hosts").exists()
    nix_parse(iso_nix)
    module = nix_eval(iso_nix, DEFAULTS["live_iso_packages"])
    assert module["imports"] == ["/m/installer/cd-dvd/installation-cd-graphical-calamares-%s.nix" % desktop]
    assert "isoImage" not in module  # the stock compression
    assert module["services"]["spice-vdagentd"] == {"enable": False}
    assert module["services"]["openssh"] == {"enable": True, "settings": {"PermitRootLogin": {"_force": "no"}}}
    assert keys_of(module, "nixos") == [KEY]
    assert keys_of(module, "root") == []
    assert module["environment"]["systemPackages"] == DEFAULTS["live_iso_packages"]


@needs_nix
def test_hostile_keys_stay_literal_strings(tmp_path):
    canary = tmp_path / "canary"
    canary.write_text("INJECTED")
    hostile = [
        HOSTILE_KEY,
        'ssh-ed25519 AAAA x"; users.users.evil.isNormalUser = true; "',
        "ssh-ed25519 AAAA ${builtins.readFile %s} $${x} \\${y} ''${z} \\ \\\\ \t tab" % canary,
        'command="echo $HOME \\"quoted\\"" ssh-ed25519 AAAA options@key \u00e9',
    ]
    result = build_iso(tmp_path, live_iso_authorized_keys=hostile)
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-3000:]
    iso_nix = tmp_path / "iso" / "iso.nix"
    nix_parse(iso_nix)
    module = nix_eval(iso_nix, DEFAULTS["live_iso_packages"])
    assert keys_of(module, "nixos") == hostile
    assert keys_of(module, "root") == hostile
    assert set(module["users"]["users"]) == {"root", "nixos"}
    assert set(module) == {"imports", "isoImage", "services", "systemd", "users", "nix", "environment"}
    assert "INJECTED" not in json.dumps(module)


BAD_PACKAGES = [
    '"; evil = true; "',
    "foo${bar}",
    "pkgs.let",
    "in",
    "python3Packages.",
    "1password",
    "git rsync",
    "",
]


def test_package_names_must_be_attribute_paths(tmp_path):
    result = build_iso(tmp_path, live_iso_authorized_keys=[KEY],
                       live_iso_extra_packages=["htop", "python3Packages.requests"] + BAD_PACKAGES)
    assert result.rc != 0
    msg = task(result, "Check the authorized keys and package names")["msg"]
    assert "not a nixpkgs attribute name" in msg
    listed = json.loads(msg[msg.index("live_iso_extra_packages: ") + len("live_iso_extra_packages: "):
                            msg.index(" not a nixpkgs")])
    assert sorted(listed) == sorted(BAD_PACKAGES)  # every offending value named, and only those
    assert not (tmp_path / "iso" / "iso.nix").exists()


@pytest.mark.parametrize("keys, expected", [
    ([], "live_iso_authorized_keys is empty"),
    ([KEY, "ssh-ed25519 AAAA a\nssh-ed25519 BBBB injected-line", "   "], "2 value(s) are blank or span several lines"),
])
def test_bad_key_lists_are_rejected(tmp_path, keys, expected):
    result = build_iso(tmp_path, live_iso_authorized_keys=keys)
    assert result.rc != 0
    assert expected in " ".join(task(result, "Check the authorized keys and package names")["msg"].split())
    assert not (tmp_path / "iso" / "iso.nix").exists()


def test_unknown_base_is_rejected_by_the_argument_spec(tmp_path):
    result = build_iso(tmp_path, live_iso_authorized_keys=[KEY], live_iso_base="kde")
    assert result.rc != 0
    assert "live_iso_base" in result.stdout and "minimal, graphical" in result.stdout
    assert not (tmp_path / "iso").exists()


def test_check_mode_writes_nothing(tmp_path):
    result = build_iso(tmp_path, check=True, live_iso_authorized_keys=[KEY])
    assert result.rc == 0, result.stdout[-3000:]
    assert task(result, "Render iso.nix")["changed"] is True
    assert not (tmp_path / "iso").exists()


def test_default_directory_is_under_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    result = run_playbook(PLAYBOOK, extra_vars={"live_iso_authorized_keys": [KEY], "live_iso_build": False})
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-3000:]
    expected = home / ".cache" / "impermanent-nixos" / "live-iso" / "iso.nix"
    assert expected.is_file()
    assert task(result, "Record the rendered iso.nix")["ansible_facts"]["live_iso_nix_file"] == str(expected)


@pytest.mark.skipif(HAVE_NIXPKGS, reason="<nixpkgs> resolves here, so the build does not stop for a missing nixpkgs")
@needs_nix
@needs_nix
@pytest.mark.parametrize("nix_warns", [False, True], ids=["plain", "warning-first"])
def test_build_stops_when_nixpkgs_is_missing(tmp_path, nix_warns):
    environment = {}
    if nix_warns:
        # A nix.conf with a setting Nix does not know: every Nix command then prints a warning before its error,
        # as it does on a machine without the nixbld group.
        conf_dir = tmp_path / "nix-conf"
        conf_dir.mkdir()
        (conf_dir / "nix.conf").write_text("impermanent-nixos-test-unknown-setting = 1\n")
        environment = {"NIX_CONF_DIR": str(conf_dir)}
        probe = subprocess.run([NIX, "--eval", "-E", "<nixpkgs>"], capture_output=True, text=True, check=False,
                               env=dict(os.environ, **environment))
        assert probe.stderr.startswith("warning:"), probe.stderr  # the case this test is about
    result = build_iso(tmp_path, live_iso_authorized_keys=[KEY], live_iso_build=True,
                       live_iso_environment=environment)
    assert result.rc != 0
    failed = task(result, "Stop when nixpkgs is missing")
    assert failed["failed"] is True
    assert "nixpkgs is missing" in failed["msg"]
    # nix-instantiate's own words are passed on: its error line, not a warning printed before it
    assert "error: file 'nixpkgs' was not found in the Nix search path" in failed["msg"]
    assert "warning:" not in failed["msg"]
    assert "live_iso_build=false" in failed["msg"]
    assert (tmp_path / "iso" / "iso.nix").is_file()  # rendered before stopping
    assert not (tmp_path / "iso" / "result").exists()


def test_build_stops_when_nix_build_is_missing(tmp_path):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    result = build_iso(tmp_path, live_iso_authorized_keys=[KEY], live_iso_build=True,
                       live_iso_environment={"PATH": str(empty_bin)})
    assert result.rc != 0
    failed = task(result, "Stop when Nix is missing")
    assert "nix-build is missing" in failed["msg"]
    assert (tmp_path / "iso" / "iso.nix").is_file()


# A stand-in for nixpkgs, for the build path only: `<nixpkgs/nixos>` whose isoImage is a derivation that copies
# iso.nix into result/iso/nixos-test-double.iso. It exercises the role's real nix-build call (-I nixpkgs, -o result,
# extra args), the result link, the .iso lookup and the changed/ok logic; it knows nothing of NixOS.
NIXPKGS_DOUBLE = r"""# TEST DOUBLE of nixpkgs (tests/integration/test_live_iso.py): not NixOS, builds no ISO.
{ configuration ? <nixos-config>, system ? builtins.currentSystem }:
{
  config.system.build.isoImage = derivation {
    name = "test-double-nixos-iso";
    inherit system;
    builder = "/bin/sh";
    args = [ "-c" "/bin/mkdir -p $out/iso && /bin/cp $isoNix $out/iso/nixos-test-double.iso" ];
    isoNix = builtins.toFile "iso.nix" (builtins.readFile configuration);
  };
}
"""


@pytest.fixture
def nixpkgs_double(tmp_path):
    root = tmp_path / "nixpkgs-double"
    (root / "nixos").mkdir(parents=True)
    (root / "nixos" / "default.nix").write_text(NIXPKGS_DOUBLE)
    return str(root)


@pytest.mark.skipif(shutil.which("nix-build") is None or os.geteuid() != 0,
                    reason="needs nix-build and root (a build into /nix/store as the nixbld users)")
def test_build_path_with_a_nixpkgs_double(tmp_path, nixpkgs_double):
    common = dict(live_iso_build=True, live_iso_nixpkgs=nixpkgs_double,
                  # no binary cache is reachable here: do not wait for one. The double's builder is the host's
                  # /bin/sh, which Nix's build sandbox does not hold (real nixpkgs builds with store paths only).
                  live_iso_nix_build_args=["--option", "substituters", "", "--option", "sandbox", "false"])
    iso_dir = tmp_path / "iso"
    result = build_iso(tmp_path, live_iso_authorized_keys=[KEY], **common)  # async, as in production
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert task(result, "Run nix-build for the ISO")["changed"] is True
    image = task(result, "Record the ISO image path")["ansible_facts"]["live_iso_image"]
    assert image == str(iso_dir / "result" / "iso" / "nixos-test-double.iso")
    with open(image, encoding="utf-8") as f:
        assert f.read() == (iso_dir / "iso.nix").read_text()  # built from the rendered file
    assert task(result, "Report the live ISO")["msg"].startswith("Live ISO: " + image)
    first_target = os.readlink(iso_dir / "result")

    again = build_iso(tmp_path, live_iso_authorized_keys=[KEY], live_iso_build_timeout=0, **common)
    assert again.rc == 0 and again.changed == 0, again.stats
    assert os.readlink(iso_dir / "result") == first_target

    other_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKey other@host"
    changed = build_iso(tmp_path, live_iso_authorized_keys=[other_key], live_iso_build_timeout=0, **common)
    assert changed.rc == 0, changed.stdout[-3000:]
    assert task(changed, "Render iso.nix")["changed"] is True
    assert task(changed, "Run nix-build for the ISO")["changed"] is True
    assert os.readlink(iso_dir / "result") != first_target
    with open(image, encoding="utf-8") as f:
        assert other_key in f.read()


@pytest.mark.skipif(not HAVE_NIXPKGS,
                    reason="nixpkgs not available here: the ISO build itself runs only where <nixpkgs> resolves")
def test_real_iso_build(tmp_path):
    result = build_iso(tmp_path, live_iso_authorized_keys=[KEY], live_iso_build=True)
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-3000:]
    image = task(result, "Record the ISO image path")["ansible_facts"]["live_iso_image"]
    assert image.endswith(".iso") and os.path.isfile(image)
    assert image.startswith(str(tmp_path / "iso" / "result" / "iso"))
    again = build_iso(tmp_path, live_iso_authorized_keys=[KEY], live_iso_build=True)
    assert again.rc == 0 and again.changed == 0, again.stats


# --- examples/inventory: the fleet example must stay in step with the roles' variables -------------------------

EXAMPLE_INVENTORY = os.path.join(REPO, "examples", "inventory")
EXAMPLE_VAULT_PASSWORD = "impermanent-example"  # documented in examples/inventory/README.md
ROLE_PREFIXES = {"disk_": "disk", "layout_": "layout", "hwconfig_": "hwconfig", "flake_": "flake",
                 "live_iso_": "live_iso", "identity_": "identity"}


def _spec_options(role):
    with open(os.path.join(REPO, "roles", role, "meta", "argument_specs.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)["argument_specs"]["main"]["options"]


@pytest.fixture(scope="module")
def example_hostvars(tmp_path_factory):
    password = tmp_path_factory.mktemp("vault") / "password"
    password.write_text(EXAMPLE_VAULT_PASSWORD + "\n")
    proc = subprocess.run(["ansible-inventory", "-i", EXAMPLE_INVENTORY, "--vault-password-file", str(password),
                           "--list"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    return data, data["_meta"]["hostvars"], str(password)


def test_example_fleet_has_the_three_kinds_of_disk(example_hostvars):
    data, hostvars, _ = example_hostvars
    assert sorted(data["nixos_live"]["hosts"]) == ["laptop", "tower", "vm1"]
    assert hostvars["vm1"]["disk_device"].startswith("/dev/disk/by-id/virtio-")
    assert hostvars["laptop"]["disk_device"].startswith("/dev/disk/by-id/nvme-")
    assert hostvars["tower"]["disk_device"].startswith("/dev/disk/by-id/ata-")
    for host in ("vm1", "laptop", "tower"):
        assert hostvars[host]["ansible_user"] == "nixos" and hostvars[host]["ansible_become"] is True
        # the passphrase is only ever an indirection to the vault, whose value decrypts with the example password
        assert hostvars[host]["disk_luks_passphrase"] == "{{ vault_disk_luks_passphrase }}"
        assert hostvars[host]["vault_disk_luks_passphrase"]
    assert hostvars["laptop"]["disk_luks"] is True


def test_example_variables_are_the_roles_variables(example_hostvars):
    _, hostvars, _ = example_hostvars
    specs = {role: _spec_options(role) for role in set(ROLE_PREFIXES.values())}
    checked = 0
    for host, variables in hostvars.items():
        for name in variables:
            for prefix, role in ROLE_PREFIXES.items():
                if name.startswith(prefix):
                    assert name in specs[role], "%s: %s is not a variable of the %s role" % (host, name, role)
                    checked += 1
    assert checked >= 20


def test_example_inventory_passes_the_argument_specs(example_hostvars):
    _, _, password = example_hostvars
    specs = {}
    for role in set(ROLE_PREFIXES.values()):
        options = _spec_options(role)
        for option in options.values():
            option.pop("default", None)  # role defaults are not in scope in this play: check what is set
        specs[role] = options
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(["ansible-playbook", "-i", EXAMPLE_INVENTORY, "--vault-password-file", password,
                           os.path.join(HERE, "playbooks", "live_iso_example_inventory.yml"),
                           "-e", json.dumps({"specs": specs})],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    stats = json.loads(proc.stdout[proc.stdout.index("{"):])["stats"]
    assert sorted(stats) == ["laptop", "localhost", "tower", "vm1"]
    assert all(s["failures"] == 0 and s["unreachable"] == 0 for s in stats.values()), stats
