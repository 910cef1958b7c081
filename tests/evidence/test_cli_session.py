"""`evidence session ...`: saved logins encrypted in the home, never printed, checked on import.

The login test drives the real thing: the CLI opens Chromium on an Xvfb
display the test started, the test types into the login form with xdotool
as an officer would, and presses Enter on the CLI's stdin.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "capture"))

from login_site import PASSWORD, USER, LoginSite  # noqa: E402

from ledger.errors import ConfigError, KeyFileError, UsageError  # noqa: E402
from ledger.sessions import LoginSession, SessionStore, check_name, read_storage_state  # noqa: E402

PASS = "correct horse battery staple"
SECRET = "v-" + "7f3a9c" * 6
STATE = {"cookies": [{"name": "sid", "value": SECRET, "domain": ".shop.example", "path": "/", "expires": 1893456000,
                      "httpOnly": True, "secure": True, "sameSite": "Lax"}],
         "origins": [{"origin": "https://shop.example", "localStorage": [{"name": "token", "value": SECRET}]}]}


def run(home, *args, check=None, passphrase=PASS, **kw):
    env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="200", **kw.pop("env", {}))
    env.pop("EVIDENCE_KEY_PASSPHRASE", None)
    if passphrase:
        env["EVIDENCE_KEY_PASSPHRASE"] = passphrase
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in p.stderr
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture(scope="module")
def shome(tmp_path_factory):
    h = tmp_path_factory.mktemp("cs") / "home"
    run(h, "init", check=0)
    return h


def write_state(tmp_path, obj, name="state.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def test_import_list_show_delete_never_print_a_value(shome, tmp_path):
    f = write_state(tmp_path, STATE)
    out = json.loads(run(shome, "session", "import", "shop", str(f), "--marker", "我的订单", "--operator", "Li Wei", "--json", check=0).stdout)
    assert out["saved"]["name"] == "shop" and out["saved"]["made_by"] == "Li Wei"
    path = shome / "sessions" / "shop.session"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert SECRET.encode() not in path.read_bytes()  # encrypted at rest
    listed = json.loads(run(shome, "session", "list", "--json", check=0).stdout)["sessions"]
    assert [(s["name"], s["cookies"], s["marker"]) for s in listed] == [("shop", 1, "我的订单")]
    shown = json.loads(run(shome, "session", "show", "shop", "--json", check=0).stdout)
    assert shown["cookies"] == [{"name": "sid", "domain": ".shop.example", "path": "/", "expires": "2030-01-01T00:00:00Z"}]
    assert shown["origins_with_storage"] == [{"origin": "https://shop.example", "local_storage_keys": 1}]
    text = run(shome, "session", "show", "shop", check=0).stdout
    assert "cookie sid  domain .shop.example" in text
    for p in (json.dumps(out), json.dumps(listed), json.dumps(shown), text, run(shome, "session", "list", check=0).stdout):
        assert SECRET not in p
    # The stored state is the one imported (the control: the secret is in there, just encrypted).
    s = SessionStore.of_home(shome, PASS.encode()).load("shop")
    assert s.storage_state == STATE and s.made_by == "Li Wei" and s.source == "import"
    p = run(shome, "session", "import", "shop", str(f), check=2)
    assert "already exists" in p.stderr
    run(shome, "session", "import", "shop", str(f), "--replace", check=0)
    run(shome, "session", "delete", "shop", check=0)
    assert not path.exists()
    p = run(shome, "session", "delete", "shop", check=2)
    assert p.stderr.startswith("error: no session named shop")


BAD_STATES = {
    "not-json": "{cookies: []",
    "array": [],
    "no-cookies": {"origins": []},
    "no-origins": {"cookies": []},
    "cookie-not-object": {"cookies": ["sid=1"], "origins": []},
    "cookie-without-value": {"cookies": [{"name": "sid", "domain": "a.example", "path": "/"}], "origins": []},
    "expires-is-text": {"cookies": [{**STATE["cookies"][0], "expires": "tomorrow"}], "origins": []},
    "bad-same-site": {"cookies": [{**STATE["cookies"][0], "sameSite": "Sometimes"}], "origins": []},
    "origin-not-http": {"cookies": [], "origins": [{"origin": "file:///etc", "localStorage": []}]},
    "local-storage-not-pairs": {"cookies": [], "origins": [{"origin": "https://a.example", "localStorage": [1]}]},
}


@pytest.mark.parametrize("fault", sorted(BAD_STATES))
def test_read_storage_state_names_the_fault(tmp_path, fault):
    f = write_state(tmp_path, BAD_STATES[fault])
    with pytest.raises(UsageError, match="not a Playwright storage state"):
        read_storage_state(f)


def test_read_storage_state_control_minimal_and_full_states_pass(tmp_path):
    minimal = {"cookies": [{"name": "a", "value": "b", "domain": "x.example", "path": "/"}], "origins": []}
    assert read_storage_state(write_state(tmp_path, minimal)) == minimal
    assert read_storage_state(write_state(tmp_path, STATE, "full.json")) == STATE


def test_import_refuses_what_is_not_a_storage_state(shome, tmp_path):
    f = write_state(tmp_path, BAD_STATES["cookie-without-value"])
    p = run(shome, "session", "import", "bad", str(f), check=2)
    assert p.stderr.startswith("error:") and 'not a Playwright storage state: cookie 0 has no string "value"' in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (shome / "sessions" / "bad.session").exists()


def test_bad_names_and_missing_files(shome, tmp_path):
    f = write_state(tmp_path, STATE)
    for name in ("../x", ".hidden", "a b", "x" * 65, "", "a/b"):
        with pytest.raises(UsageError, match="is not usable"):
            check_name(name)
    assert check_name("shop-buyer_2.cn") == "shop-buyer_2.cn"  # the control
    p = run(shome, "session", "import", "../x", str(f), check=2)
    assert "is not usable" in p.stderr and not (shome / "x.session").exists()
    p = run(shome, "session", "import", "ok", str(tmp_path / "missing.json"), check=2)
    assert p.stderr.startswith("error: cannot read")
    p = run(shome, "session", "show", "nothing", check=2)
    assert "no session named nothing" in p.stderr


def test_passphrase_is_the_homes_and_the_file_is_bound_to_its_name(shome, tmp_path):
    f = write_state(tmp_path, STATE)
    p = run(shome, "session", "import", "x", str(f), check=2, passphrase="not the passphrase")
    assert p.stderr.startswith("error:") and "wrong passphrase" in p.stderr
    run(shome, "session", "import", "one", str(f), check=0)
    run(shome, "session", "import", "two", str(f), check=0)
    store = SessionStore.of_home(shome, PASS.encode())
    assert store.load("one").name == "one"  # the control
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        SessionStore.of_home(shome, b"guess").load("one")
    d = shome / "sessions"
    # A file copied under another name does not open as that session.
    shutil.copy(d / "one.session", d / "two.session")
    with pytest.raises(KeyFileError):
        store.load("two")
    # One flipped byte of ciphertext: refused.
    env = json.loads((d / "one.session").read_text())
    ct = bytearray(env["ciphertext"].encode())
    ct[10] = ord("A") if ct[10] != ord("A") else ord("B")
    env["ciphertext"] = ct.decode()
    (d / "one.session").write_text(json.dumps(env))
    with pytest.raises(KeyFileError):
        store.load("one")
    p = run(shome, "session", "show", "one", check=2)
    assert "cannot open session one" in p.stderr or "damaged" in p.stderr


def test_a_home_without_passphrase_keeps_no_sessions(tmp_path):
    h = tmp_path / "plain"
    run(h, "init", "--no-passphrase", check=0, passphrase=None)
    f = write_state(tmp_path, STATE)
    p = run(h, "session", "import", "x", str(f), check=2, passphrase=None)
    assert "encrypted with the home passphrase" in p.stderr
    with pytest.raises(ConfigError):
        SessionStore.of_home(h, None).save(LoginSession.new("x", STATE, made_by="t"))


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("xdotool") is None or shutil.which("Xvfb") is None, reason="needs xdotool and Xvfb")
def test_login_in_a_visible_browser_and_enter_saves_it(shome):
    from capture.interactive import VirtualDisplay

    site = LoginSite().start()
    try:
        with VirtualDisplay() as display:
            env = dict(os.environ, EVIDENCE_HOME=str(shome), EVIDENCE_KEY_PASSPHRASE=PASS, DISPLAY=display)
            proc = subprocess.Popen(
                [sys.executable, "-m", "evidence.cli", "session", "login", "web", site.url("/login"),
                 "--marker", "Welcome alice", "--operator", "Wang Fang", "--json"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            )
            try:
                assert site.login_form_served.wait(60), "the browser never opened the login page"
                xenv = dict(os.environ, DISPLAY=display)

                def xdo(*a):
                    return subprocess.run(["xdotool", *a], env=xenv, capture_output=True, text=True, timeout=30, check=True).stdout

                wid = xdo("search", "--sync", "--name", "Shop login").split()[0]
                time.sleep(0.5)  # the first paint
                xdo("mousemove", "--window", wid, "200", "150", "click", "1")
                xdo("type", "--delay", "30", USER)
                xdo("key", "Tab")
                xdo("type", "--delay", "30", PASSWORD)
                xdo("key", "Return")
                assert site.members_served.wait(30), "the login did not go through"
                out, err = proc.communicate("\n", timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert proc.returncode == 0, err
        saved = json.loads(out)["saved"]
        assert saved["name"] == "web" and saved["made_by"] == "Wang Fang" and saved["source"] == "login"
        assert sorted(c["name"] for c in saved["cookies"]) == ["seen", "sid"] and saved["url"] == site.url("/login")
        s = SessionStore.of_home(shome, PASS.encode()).load("web")
        value = next(c["value"] for c in s.storage_state["cookies"] if c["name"] == "sid")
        assert value in site.sids  # made by the server for this very login
        assert value not in out and value not in err
        assert s.marker == "Welcome alice"
    finally:
        site.stop()


def test_capture_options_record_the_session_without_its_secrets():
    from capture.options import CaptureOptions
    from capture.session import context_options

    s = LoginSession.new("shop", STATE, made_by="Li Wei", marker="我的订单")
    opt = CaptureOptions(session=s, expect=["会员价"], device="Pixel 7", viewport_width=800)
    # The device wins over a separate viewport (the CLI refuses the mix instead).
    assert (opt.viewport_width, opt.device_scale_factor, opt.is_mobile, opt.has_touch) == (412, 2.625, True, True)
    assert opt.expected_texts == ("会员价", "我的订单")
    recorded = json.dumps(opt.to_json(), ensure_ascii=False)
    assert SECRET not in recorded and '"name": "shop"' in recorded and "sid" in recorded
    # The control: the browser context does get the secret, as a copy it may change freely.
    kw = context_options(opt)
    assert kw["storage_state"] == STATE and kw["storage_state"] is not s.storage_state
    assert "storage_state" not in context_options(CaptureOptions())
    with pytest.raises(UsageError, match="unknown device"):
        CaptureOptions(device="Nokia 3310")
