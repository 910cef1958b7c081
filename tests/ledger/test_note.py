"""C2SP signed-note, tlog-cosignature, tlog-checkpoint and tlog-proof."""

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.checkpoint import Checkpoint, TlogProof, format_proof, parse_proof
from ledger.errors import ProofError, SignatureError
from ledger.note import (
    CosignatureVerifier,
    Verifier,
    add_signature,
    cosign,
    parse_note,
    sign_note,
    verify_note,
    vkey_for,
)

# The example of golang.org/x/mod/sumdb/note, which C2SP signed-note formalises:
# a third-party key and signature, verified byte for byte.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_NOTE = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_third_party_note_verifies():
    v = Verifier.parse(PETER_VKEY)
    assert v.key_id.hex() == "c74f20a3" and v.vkey == PETER_VKEY
    res = verify_note(PETER_NOTE, [v])
    assert res.text.startswith("If you think") and res.verified_by == [v]
    with pytest.raises(SignatureError):
        verify_note(PETER_NOTE.replace("cryptography", "Cryptography"), [v])


def keypair(name):
    k = Ed25519PrivateKey.generate()
    return k, Verifier.parse(vkey_for(name, k.public_key()))


def test_round_trip_and_hand_built_note():
    k, v = keypair("example.com/log")
    text = Checkpoint("example.com/log", 5, b"\x01" * 32).to_text()
    note = sign_note(text, "example.com/log", k)
    # built by hand from the spec: text, blank line, em dash line with keyID || sig
    sig = k.sign(text.encode())
    by_hand = text + "\n\u2014 example.com/log " + base64.b64encode(v.key_id + sig).decode() + "\n"
    assert note == by_hand
    assert verify_note(by_hand, [v]).text == text


def test_unknown_signers_ignored_and_required():
    k, v = keypair("log.example")
    other, ov = keypair("witness.example")
    note = add_signature(sign_note("hello\n", "log.example", k), "witness.example", other)
    assert len(parse_note(note)[1]) == 2
    assert verify_note(note, [v]).verified_by == [v]
    assert {x.name for x in verify_note(note, [v, ov]).verified_by} == {"log.example", "witness.example"}
    with pytest.raises(SignatureError, match="no trusted signer"):
        verify_note(note, [keypair("log.example")[1]])
    with pytest.raises(SignatureError, match="no trusted signer"):
        verify_note(note, [])


def test_bad_signature_of_known_key_rejected():
    k, v = keypair("log.example")
    note = sign_note("hello\n", "log.example", k)
    text, sigs = parse_note(note)
    forged = bytearray(base64.b64decode(sigs[0].line.split(" ")[2]))
    forged[10] ^= 1
    bad = text + "\n\u2014 log.example " + base64.b64encode(bytes(forged)).decode() + "\n"
    with pytest.raises(SignatureError, match="does not verify"):
        verify_note(bad, [v])


@pytest.mark.parametrize(
    "note",
    [
        "no signature block\n",
        "text\n\n",
        "text\n\n\u2014 log.example AAAA\n",  # too short
        "text\n\n\u2014 log.example !!!!\n",
        "text\n\n- log.example AAAAAAAAAA==\n",  # ASCII hyphen, not U+2014
        "text\r\n\n\u2014 log.example AAAAAAAAAA==\n",
        "text\n\n\u2014 log.example AAAAAAAAAA==",  # no final newline
        "text\x07\n\n\u2014 log.example AAAAAAAAAA==\n",
        b"\xff\n\n\xe2\x80\x94 x AAAAAAAAAA==\n",
    ],
)
def test_malformed_notes(note):
    with pytest.raises(SignatureError):
        parse_note(note)


def test_too_many_signatures():
    line = "\u2014 x " + base64.b64encode(b"\x00" * 68).decode() + "\n"
    with pytest.raises(SignatureError, match="at most"):
        parse_note("t\n\n" + line * 101)


def test_vkey_rejects_mismatch():
    k = Ed25519PrivateKey.generate()
    good = vkey_for("a.example", k.public_key())
    name, kid, key = good.split("+", 2)
    with pytest.raises(SignatureError, match="key ID"):
        Verifier.parse(f"{name}+00000000+{key}")
    with pytest.raises(SignatureError):
        Verifier.parse("a.example+00000000")
    with pytest.raises(SignatureError):
        vkey_for("bad name", k.public_key())


def test_cosignature_round_trip():
    w = Ed25519PrivateKey.generate()
    cv = CosignatureVerifier.from_key("witness.example/w1", w.public_key())
    assert CosignatureVerifier.parse(cv.vkey) == cv
    text = Checkpoint("log.example", 10, b"\x02" * 32).to_text()
    line = cosign(text, "witness.example/w1", w, 1_700_000_000)
    assert cv.matches(line)
    assert cv.verify(text, line) == 1_700_000_000
    with pytest.raises(SignatureError):
        cv.verify(Checkpoint("log.example", 11, b"\x02" * 32).to_text(), line)
    # a cosignature key is not a note-signing key: the type byte differs
    with pytest.raises(SignatureError):
        Verifier.parse(cv.vkey)


def test_checkpoint_parse():
    cp = Checkpoint("log.example", 42, b"\x03" * 32, ("ext one",))
    assert Checkpoint.parse(cp.to_text()) == cp
    for bad in ["log\n01\nAA==\n", "log\n1\n" + base64.b64encode(b"x" * 31).decode() + "\n", "\n1\nAA==\n", "log\n1\n"]:
        with pytest.raises(SignatureError):
            Checkpoint.parse(bad)


def test_tlog_proof_format():
    k, v = keypair("log.example")
    note = sign_note(Checkpoint("log.example", 9, b"\x04" * 32).to_text(), "log.example", k)
    p = TlogProof(7, [b"\x05" * 32, b"\x06" * 32], note, extra=b"exhibit")
    text = format_proof(p)
    assert text.startswith("c2sp.org/tlog-proof@v1\nextra ZXhoaWJpdA==\nindex 7\n")
    assert parse_proof(text) == p
    for bad in [text.replace("index 7", "index 07"), text.replace("@v1", "@v2"), text.replace("\n\n", "\n"), text.replace("BQUF", "BQU")]:
        with pytest.raises(ProofError):
            parse_proof(bad)
