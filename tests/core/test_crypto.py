from __future__ import annotations

import base64
import copy
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from turnstate.codec import Sealed
from turnstate.envelope import ENVELOPE_MARKER, is_envelope
from turnstate.errors import (
    DecryptionError,
    EncryptionError,
    KeyRingError,
    PathError,
    PlaintextFieldError,
    TurnStateError,
)
from turnstate.field_encryption import REDACTED, FieldEncryption
from turnstate.keyring import Cipher, EnvKeys, KeyRing, load_keys

KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))
SECRET = "alice@example.com"


def ring1() -> KeyRing:
    return KeyRing({"k1": KEY1})


def user_enc(**kwargs: Any) -> FieldEncryption:
    return FieldEncryption(["user.email", "user.phone", "user.profile"], ring1(), **kwargs)


def envelope_text(data: dict[str, Any], name: str) -> str:
    value = data[name]
    assert is_envelope(value)
    text = value[ENVELOPE_MARKER]
    assert isinstance(text, str)
    return text


# -- the envelope format -------------------------------------------------------------------------------


def test_known_answer_pins_the_envelope_format() -> None:
    """Key, nonce, storage key, path and value give exactly this envelope: 'v1.<kid>.' and the base64 of
    the nonce, AES-256-GCM ciphertext and tag of the JSON value under the documented associated data."""
    out = user_enc().encrypt_data("user", "user/u1", {"email": SECRET})
    text = envelope_text(out, "email")
    nonce = base64.b64decode(text.split(".")[2])[:12]
    ad = b'["v1","k1","user/u1","user",["email"]]'
    sealed = AESGCM(KEY1).encrypt(nonce, b'"alice@example.com"', ad)
    assert out == {"email": {"$enc": "v1.k1." + base64.b64encode(nonce + sealed).decode()}}


def test_known_answer_decrypts_with_the_documented_associated_data() -> None:
    """The envelope is base64(nonce || AES-GCM(JSON value)), AD ["v1", kid, storage key, scope, [path]]."""
    enc = FieldEncryption(["conversation.incident.a\\.b"], ring1())
    out = enc.encrypt_data("conversation", "conversation/c=1", {"incident": {"a.b": {"n": [1, "x"]}}})
    version, kid, body = envelope_text(out["incident"], "a.b").split(".")
    assert (version, kid) == ("v1", "k1")
    raw = base64.b64decode(body, validate=True)
    assert len(raw) == 12 + len(b'{"n":[1,"x"]}') + 16
    ad = b'["v1","k1","conversation/c=1","conversation",["incident","a.b"]]'
    assert AESGCM(KEY1).decrypt(raw[:12], raw[12:], ad) == b'{"n":[1,"x"]}'


def test_each_encryption_uses_a_fresh_nonce() -> None:
    enc = user_enc()
    first = envelope_text(enc.encrypt_data("user", "user/u1", {"email": SECRET}), "email")
    second = envelope_text(enc.encrypt_data("user", "user/u1", {"email": SECRET}), "email")
    assert first != second
    assert first.split(".")[2][:16] != second.split(".")[2][:16]


def nonce_of(data: dict[str, Any], name: str) -> bytes:
    return base64.b64decode(envelope_text(data, name).split(".")[2])[:12]


def test_threads_never_share_a_nonce() -> None:
    enc = user_enc()

    def seal_many() -> list[bytes]:
        return [
            nonce_of(enc.encrypt_data("user", "user/u1", {"email": SECRET}), "email") for _ in range(2000)
        ]

    with ThreadPoolExecutor(4) as pool:
        nonces = [nonce for batch in pool.map(lambda _: seal_many(), range(4)) for nonce in batch]
    assert len(nonces) == 8000 and len(set(nonces)) == 8000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_never_reuses_its_parents_nonces() -> None:
    enc = user_enc()
    enc.encrypt_data("user", "user/u1", {"email": SECRET})  # the parent has drawn nonces ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next nonces and leave at once
        os.close(read)
        child = b"".join(
            nonce_of(enc.encrypt_data("user", "u", {"email": SECRET}), "email") for _ in range(50)
        )
        os.write(write, child)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child_bytes = pipe.read()
    os.waitpid(pid, 0)
    parent = {nonce_of(enc.encrypt_data("user", "u", {"email": SECRET}), "email") for _ in range(50)}
    child = {child_bytes[i : i + 12] for i in range(0, len(child_bytes), 12)}
    assert len(child) == 50 and not parent & child


@pytest.mark.parametrize(
    "value",
    [
        SECRET,
        "",
        "ünïcødé 🙂",
        0,
        -7,
        2**62,
        1.5,
        True,
        False,
        None,
        [1, "a", None],
        {"a": {"b": [1, 2]}},
        {},
    ],
)
def test_any_json_value_round_trips(value: Any) -> None:
    enc = user_enc()
    stored = enc.encrypt_data("user", "user/u1", {"email": value, "plain": 1})
    assert is_envelope(stored["email"])
    assert stored["plain"] == 1
    # Storage round trip through JSON, as the document format does it.
    loaded = msgspec.json.decode(msgspec.json.encode(stored))
    assert enc.decrypt_data("user", "user/u1", loaded) == {"email": value, "plain": 1}


@settings(max_examples=150, deadline=None)
@given(
    value=st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    ),
    # "*" and "**" are wildcards; an object with a "$enc" member is sealed whole, which its own test covers
    name=st.text(min_size=1, max_size=12).filter(lambda n: n not in ("*", "**", "$enc")),
    key=st.text(min_size=1, max_size=40),
)
def test_round_trip_property(value: Any, name: str, key: str) -> None:
    """Any JSON value under any field name and storage key decrypts to itself; the input is untouched."""
    from turnstate.paths import join

    enc = FieldEncryption([join("user", "box", name)], ring1())
    data = {"box": {name: value, "other": 1}}
    before = copy.deepcopy(data)
    stored = enc.encrypt_data("user", key, data)
    assert data == before
    assert is_envelope(stored["box"][name])
    loaded = msgspec.json.decode(msgspec.json.encode(stored))
    assert enc.decrypt_data("user", key, loaded) == msgspec.json.decode(msgspec.json.encode(before))


# -- binding to document and field ---------------------------------------------------------------------


def test_ciphertext_swapped_between_users_fails() -> None:
    enc = user_enc()
    alice = enc.encrypt_data("user", "user/alice", {"email": SECRET})
    with pytest.raises(DecryptionError) as info:
        enc.decrypt_data("user", "user/mallory", {"email": alice["email"]})
    assert info.value.key == "user/mallory"
    assert info.value.path == "user.email"
    assert "authentication failed" in str(info.value)
    assert SECRET not in str(info.value)


def test_ciphertext_swapped_between_fields_fails() -> None:
    enc = user_enc()
    stored = enc.encrypt_data("user", "user/alice", {"email": SECRET, "phone": "+1 555 0100"})
    swapped = {"email": stored["phone"], "phone": stored["email"]}
    with pytest.raises(DecryptionError, match=re.escape("'user.email'")):
        enc.decrypt_data("user", "user/alice", swapped)


def test_ciphertext_swapped_between_scopes_with_the_same_key_fails() -> None:
    enc = FieldEncryption(["user.email", "private.email"], ring1())
    stored = enc.encrypt_data("user", "shared-key", {"email": SECRET})
    with pytest.raises(DecryptionError):
        enc.decrypt_data("private", "shared-key", stored)


def test_key_id_relabelled_fails() -> None:
    """The key id is bound too: an envelope relabelled to another key of the ring does not open."""
    ring = KeyRing({"k1": KEY1, "k2": KEY1}, primary="k1")
    enc = FieldEncryption(["user.email"], ring)
    text = envelope_text(enc.encrypt_data("user", "user/a", {"email": SECRET}), "email")
    relabelled = {"email": {"$enc": text.replace("v1.k1.", "v1.k2.", 1)}}
    with pytest.raises(DecryptionError, match="authentication failed"):
        enc.decrypt_data("user", "user/a", relabelled)


@pytest.mark.parametrize("position", [0, 5, 11, 12, 20, -16, -1])
def test_flipped_bit_fails(position: int) -> None:
    """A single flipped bit in the nonce, ciphertext or tag is detected."""
    enc = user_enc()
    version, kid, body = envelope_text(enc.encrypt_data("user", "user/a", {"email": SECRET}), "email").split(
        "."
    )
    raw = bytearray(base64.b64decode(body, validate=True))
    raw[position] ^= 0x01
    tampered = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(DecryptionError, match="authentication failed"):
        enc.decrypt_data("user", "user/a", {"email": {"$enc": f"{version}.{kid}.{tampered}"}})


def test_unknown_key_id_fails_and_names_it() -> None:
    old = FieldEncryption(["user.email"], KeyRing({"old": KEY2}))
    stored = old.encrypt_data("user", "user/a", {"email": SECRET})
    with pytest.raises(DecryptionError) as info:
        user_enc().decrypt_data("user", "user/a", stored)
    message = str(info.value)
    assert "'old'" in message and "does not hold" in message and "'k1'" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        ({"$enc": 1}, "malformed envelope"),
        ({"$enc": "v1.k1.AAAA", "x": 1}, "malformed envelope"),
        ({"$enc": "garbage"}, "malformed envelope"),
        ({"$enc": "v1.k1"}, "malformed envelope"),
        ({"$enc": "v1.k.1.AAAA"}, "malformed envelope"),
        ({"$enc": "v9.k1.AAAA"}, "'v9' is not supported"),
        ({"$enc": "v1.k1.!!!!"}, "bad base64"),
        ({"$enc": "v1.k1.AA-A"}, "bad base64"),
        ({"$enc": "v1.k1.AAA"}, "bad base64"),
        ({"$enc": "v1.k1.AAAAé"}, "bad base64"),
        ({"$enc": "v1.k1.AAAAAAAA"}, "too short"),
        ({"$enc": "v1.k/1.AAAA"}, "invalid key id"),
    ],
)
def test_malformed_envelope_fails(envelope: dict[str, Any], reason: str) -> None:
    with pytest.raises(DecryptionError, match=reason) as info:
        user_enc().decrypt_data("user", "user/a", {"email": envelope})
    assert info.value.key == "user/a"


@pytest.mark.parametrize("kid", ["k1", "k0"])
def test_an_authentic_envelope_holding_no_json_fails_naming_the_field(kid: str) -> None:
    """Under the primary key or an older one, a ciphertext that authenticates but holds no JSON is refused."""
    ring = KeyRing({"k1": KEY1, "k0": KEY2}, primary="k1")
    nonce = os.urandom(12)
    ad = f'["v1","{kid}","user/a","user",["email"]]'.encode()
    sealed = AESGCM(KEY1 if kid == "k1" else KEY2).encrypt(nonce, b"not json {", ad)
    envelope = {"$enc": f"v1.{kid}." + base64.b64encode(nonce + sealed).decode()}
    with pytest.raises(DecryptionError, match="not JSON") as info:
        FieldEncryption(["user.email"], ring).decrypt_data("user", "user/a", {"email": envelope})
    assert (
        info.value.key == "user/a" and "user.email" in str(info.value) and "not json {" not in str(info.value)
    )


# -- plaintext at declared paths -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [SECRET, 42, None, ["a"], {"nested": SECRET}])
def test_plaintext_at_a_declared_path_raises(value: Any) -> None:
    with pytest.raises(PlaintextFieldError) as info:
        user_enc().decrypt_data("user", "user/a", {"email": value})
    assert info.value.key == "user/a" and info.value.path == "user.email"
    assert SECRET not in str(info.value)
    assert "allow_plaintext" in str(info.value)


def test_migration_mode_reads_plaintext_and_encrypts_it_on_write() -> None:
    enc = user_enc(allow_plaintext=True)
    stored = {"email": SECRET, "other": 1}
    assert enc.needs_reencrypt("user", stored)
    data = enc.decrypt_data("user", "user/a", stored)
    assert data == {"email": SECRET, "other": 1}
    rewritten = enc.encrypt_data("user", "user/a", data)
    assert is_envelope(rewritten["email"])
    assert not enc.needs_reencrypt("user", rewritten)
    # A strict reader accepts what the migration wrote.
    assert user_enc().decrypt_data("user", "user/a", rewritten)["email"] == SECRET


def test_migration_mode_still_rejects_tampered_envelopes() -> None:
    enc = user_enc(allow_plaintext=True)
    with pytest.raises(DecryptionError):
        enc.decrypt_data(
            "user", "user/a", {"email": {"$enc": "v1.k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}
        )


# -- copying and mutation ------------------------------------------------------------------------------


def test_encrypt_data_does_not_mutate_and_copies_only_along_encrypted_paths() -> None:
    enc = FieldEncryption(["conversation.incident.reporter.*"], ring1())
    untouched = {"big": list(range(10))}
    data = {
        "incident": {"reporter": {"name": "Bob", "phone": "1"}, "status": "open"},
        "history": untouched,
    }
    before = copy.deepcopy(data)
    out = enc.encrypt_data("conversation", "conversation/c", data)
    assert data == before
    assert out is not data
    assert out["history"] is untouched
    assert out["incident"] is not data["incident"]
    assert out["incident"]["status"] == "open"
    assert all(is_envelope(v) for v in out["incident"]["reporter"].values())


def test_encrypt_data_returns_a_new_dict_when_nothing_is_encrypted() -> None:
    enc = user_enc()
    for scope, data in (("user", {"name": "x"}), ("conversation", {"email": "x"})):
        out = enc.encrypt_data(scope, f"{scope}/a", data)
        assert out == data and out is not data


def test_decrypt_data_works_in_place_and_returns_the_same_dict() -> None:
    enc = user_enc()
    stored = enc.encrypt_data("user", "user/a", {"email": SECRET})
    assert enc.decrypt_data("user", "user/a", stored) is stored
    assert stored == {"email": SECRET}


# -- path patterns -------------------------------------------------------------------------------------


def test_star_matches_exactly_one_segment() -> None:
    enc = FieldEncryption(["conversation.incident.reporter.*"], ring1())
    assert enc.covers("conversation", ("incident", "reporter", "name"))
    assert enc.covers("conversation", ("incident", "reporter", "name", "first"))  # inside the envelope
    assert not enc.covers("conversation", ("incident", "reporter"))
    assert not enc.covers("conversation", ("incident", "owner", "name"))
    out = enc.encrypt_data(
        "conversation",
        "conversation/c",
        {"incident": {"reporter": {"name": {"first": "Bob"}}, "owner": "Eve"}},
    )
    assert is_envelope(out["incident"]["reporter"]["name"])
    assert out["incident"]["owner"] == "Eve"


def test_a_path_naming_an_object_encrypts_it_whole() -> None:
    enc = user_enc()
    out = enc.encrypt_data("user", "user/a", {"profile": {"name": "A", "tags": ["x"]}})
    assert is_envelope(out["profile"])
    assert enc.decrypt_data("user", "user/a", out) == {"profile": {"name": "A", "tags": ["x"]}}


def test_overlapping_patterns_encrypt_the_outermost_value_once() -> None:
    enc = FieldEncryption(["conversation.a.*.x", "conversation.a.b", "conversation.a.b.y"], ring1())
    data = {"a": {"b": {"x": 1, "y": 2}, "c": {"x": 3, "y": 4}}}
    out = enc.encrypt_data("conversation", "conversation/c", data)
    assert is_envelope(out["a"]["b"])
    assert is_envelope(out["a"]["c"]["x"]) and out["a"]["c"]["y"] == 4
    assert enc.decrypt_data("conversation", "conversation/c", out) == data


def test_escaped_dot_addresses_a_field_name_with_a_dot() -> None:
    enc = FieldEncryption(["user.a\\.b"], ring1())
    out = enc.encrypt_data("user", "user/u", {"a.b": SECRET, "a": {"b": "plain"}})
    assert is_envelope(out["a.b"]) and out["a"] == {"b": "plain"}


ALONG = "Zoe Example, +1-555-0100"


@pytest.mark.parametrize(
    ("pattern", "data", "sealed"),
    [
        ("conversation.incident.reporter.*", {"incident": {"reporter": ALONG}}, ("incident", "reporter")),
        ("conversation.incident.reporter.*", {"incident": {"reporter": [ALONG]}}, ("incident", "reporter")),
        ("conversation.incident.reporter.*", {"incident": {"reporter": 15550100}}, ("incident", "reporter")),
        ("conversation.incident.reporter.*", {"incident": {"reporter": 1.5}}, ("incident", "reporter")),
        ("conversation.incident.reporter.*", {"incident": {"reporter": True}}, ("incident", "reporter")),
        ("conversation.incident.reporter.*", {"incident": ALONG}, ("incident",)),
        ("conversation.incident.reporter.*", {"incident": [{"reporter": ALONG}]}, ("incident",)),
        ("conversation.profile.email", {"profile": ALONG}, ("profile",)),
        ("conversation.profile.email", {"profile": [{"email": ALONG}]}, ("profile",)),
        ("conversation.a.*.c", {"a": {"x": [{"c": ALONG}], "y": {"c": 1, "d": 2}}}, ("a", "x")),
        ("conversation.a.*.c", {"a": {"x": ALONG}}, ("a", "x")),
        ("conversation.a.*.c", {"a": ALONG}, ("a",)),
        # an object that looks like an envelope is sealed whole too, so it reads back as itself
        (
            "conversation.incident.reporter.*",
            {"incident": {"reporter": {"$enc": ALONG}}},
            ("incident", "reporter"),
        ),
        (
            "conversation.incident.reporter.c",
            {"incident": {"reporter": {"$enc": "v1.k1.x"}}},
            ("incident", "reporter"),
        ),
    ],
)
def test_a_value_that_is_not_an_object_along_a_declared_path_is_encrypted_whole(
    pattern: str, data: dict[str, Any], sealed: tuple[str, ...]
) -> None:
    """Where a declared path goes through an object and finds another value, that value is one envelope
    for its own path, and it decrypts back to itself."""
    enc = FieldEncryption([pattern], ring1())
    out = enc.encrypt_data("conversation", "conversation/c", data)
    assert ALONG.encode() not in msgspec.json.encode(out) and b"15550100" not in msgspec.json.encode(out)
    held: Any = out
    for name in sealed:
        held = held[name]
    assert is_envelope(held)
    assert enc.needs_reencrypt("conversation", out) is False
    assert REDACTED.encode() in msgspec.json.encode(enc.redact("conversation", data))
    assert enc.decrypt_data("conversation", "conversation/c", copy.deepcopy(out)) == data
    # read and written back unchanged, it keeps its envelope (so an unchanged document is not rewritten)
    sealed_record: Sealed = {}
    loaded = enc.decrypt_data("conversation", "conversation/c", copy.deepcopy(out), sealed_record)
    assert enc.encrypt_data("conversation", "conversation/c", loaded, sealed_record) == out
    # the envelope is bound to that level's path: moved one level down, it fails
    if len(sealed) == 2:
        moved = {sealed[0]: {"other": held}}
        other = FieldEncryption([f"conversation.{sealed[0]}.*.x"], ring1())
        with pytest.raises(DecryptionError, match="authentication failed"):
            other.decrypt_data("conversation", "conversation/c", moved)


def test_null_and_absent_along_a_declared_path_stay_as_they_are() -> None:
    enc = FieldEncryption(["conversation.incident.reporter.*", "conversation.a.*.c"], ring1())
    for data in (
        {"incident": {"reporter": None}},
        {"incident": None},
        {"a": {"x": None}},
        {},
        {"incident": {}},
    ):
        assert enc.encrypt_data("conversation", "conversation/c", data) == data
        assert enc.decrypt_data("conversation", "conversation/c", copy.deepcopy(data)) == data


@pytest.mark.parametrize(
    ("stored", "where"),
    [
        ({"incident": {"reporter": ALONG}}, "conversation.incident.reporter"),
        ({"incident": {"reporter": [ALONG]}}, "conversation.incident.reporter"),
        ({"incident": {"reporter": 15550100}}, "conversation.incident.reporter"),
        ({"incident": {"reporter": False}}, "conversation.incident.reporter"),
        ({"incident": ALONG}, "conversation.incident"),
        ({"incident": {"reporter": {"$enc": ALONG, "x": 1}}}, "conversation.incident.reporter.$enc"),
        ({"a": {"x": [{"c": ALONG}]}}, "conversation.a.x"),
    ],
)
def test_plaintext_along_a_declared_path_is_refused_at_load_unless_migrating(
    stored: dict[str, Any], where: str
) -> None:
    paths = ["conversation.incident.reporter.*", "conversation.a.*.c"]
    enc = FieldEncryption(paths, ring1())
    assert enc.needs_reencrypt("conversation", stored)
    with pytest.raises(PlaintextFieldError) as info:
        enc.decrypt_data("conversation", "conversation/c", copy.deepcopy(stored))
    assert info.value.path == where and ALONG not in str(info.value) and "15550100" not in str(info.value)
    migrating = FieldEncryption(paths, ring1(), allow_plaintext=True)
    assert migrating.decrypt_data("conversation", "conversation/c", copy.deepcopy(stored)) == stored
    sealed = migrating.encrypt_data("conversation", "conversation/c", stored)
    assert ALONG.encode() not in msgspec.json.encode(sealed) and not enc.needs_reencrypt(
        "conversation", sealed
    )
    assert enc.decrypt_data("conversation", "conversation/c", sealed) == stored


def test_an_object_sealed_whole_reads_back_under_a_wildcard_and_is_then_sealed_per_field() -> None:
    """Declaring ``a.b.*`` where ``a.b`` was declared: its envelope (same path) still reads back, and the
    next write seals each field."""
    data = {"incident": {"reporter": {"name": ALONG}}}
    whole = FieldEncryption(["conversation.incident.reporter"], ring1())
    stored = whole.encrypt_data("conversation", "conversation/c", data)
    fields = FieldEncryption(["conversation.incident.reporter.*"], ring1())
    assert fields.needs_reencrypt("conversation", stored) is False
    assert fields.decrypt_data("conversation", "conversation/c", copy.deepcopy(stored)) == data
    again = fields.encrypt_data("conversation", "conversation/c", data)
    assert is_envelope(again["incident"]["reporter"]["name"])


def test_the_decrypted_cache_never_serves_plaintext_along_a_declared_path() -> None:
    """An instance that remembers the plaintext of an envelope sealing a level whole still refuses
    plaintext found there, and does not hand the remembered value to another path or key."""
    enc = FieldEncryption(["conversation.incident.reporter.*", "conversation.a.*.c"], ring1())
    data = {"incident": {"reporter": ALONG}}
    stored = enc.encrypt_data("conversation", "conversation/c", data)
    assert enc.decrypt_data("conversation", "conversation/c", copy.deepcopy(stored)) == data
    assert enc.decrypt_data("conversation", "conversation/c", copy.deepcopy(stored)) == data  # remembered
    with pytest.raises(PlaintextFieldError):
        enc.decrypt_data("conversation", "conversation/c", {"incident": {"reporter": ALONG}})
    with pytest.raises(DecryptionError):
        enc.decrypt_data("conversation", "conversation/other", copy.deepcopy(stored))
    envelope = stored["incident"]["reporter"]
    with pytest.raises(DecryptionError):
        enc.decrypt_data("conversation", "conversation/c", {"a": {"incident": envelope}})


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["user"], "must name a scope and a field"),
        (["*.email"], "the scope must be named"),
        (["user.**"], "'\\*\\*' is not supported"),
        ("user.email", "single string"),
    ],
)
def test_bad_patterns_are_rejected(paths: Any, message: str) -> None:
    with pytest.raises(EncryptionError, match=message):
        FieldEncryption(paths, ring1())


def test_malformed_path_raises_path_error() -> None:
    with pytest.raises(PathError):
        FieldEncryption(["user..email"], ring1())


def test_scopes_covers_mask_and_redact() -> None:
    enc = FieldEncryption(["user.email", "conversation.incident.reporter.*"], ring1())
    assert enc.scopes == {"user", "conversation"}
    assert enc.covers("user", ("email",)) and not enc.covers("user", ("name",))
    assert not enc.covers("private", ("email",))
    # mask: the value is or contains an encrypted field.
    assert enc.mask("conversation", ("incident",))
    assert enc.mask("conversation", ())
    assert enc.mask("conversation", ("incident", "reporter", "name", "x"))
    assert not enc.mask("conversation", ("incident", "status"))
    assert not enc.mask("temp", ("email",))
    data = {"incident": {"reporter": {"name": SECRET}, "status": "open"}}
    assert enc.redact("conversation", data) == {
        "incident": {"reporter": {"name": REDACTED}, "status": "open"}
    }
    assert data["incident"]["reporter"]["name"] == SECRET


def test_unencodable_value_raises_without_showing_it() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return SECRET

    with pytest.raises(EncryptionError, match=re.escape("'user.email' of 'user/a'")) as info:
        user_enc().encrypt_data("user", "user/a", {"email": Opaque()})
    assert SECRET not in str(info.value)


# -- remembered plaintext (decrypted_cache) -------------------------------------------------------------


class CountingRing(KeyRing):
    """A key ring whose ciphers count the decryptions done with them (the real AES-GCM does the work)."""

    __slots__ = ("decrypts",)

    def __init__(self, keys: dict[str, bytes]) -> None:
        super().__init__(keys)
        self.decrypts = 0

    def cipher(self, kid: str) -> Cipher | None:
        inner = super().cipher(kid)
        return None if inner is None else CountingCipher(inner, self)


class CountingCipher:
    def __init__(self, inner: Cipher, ring: CountingRing) -> None:
        self.inner = inner
        self.ring = ring

    def encrypt(self, nonce: bytes, data: bytes, ad: bytes, /) -> bytes:
        return self.inner.encrypt(nonce, data, ad)

    def decrypt(self, nonce: bytes, data: bytes, ad: bytes, /) -> bytes:
        self.ring.decrypts += 1
        return self.inner.decrypt(nonce, data, ad)


def counting(paths: list[str], **kwargs: Any) -> tuple[FieldEncryption, CountingRing]:
    ring = CountingRing({"k1": KEY1})
    return FieldEncryption(paths, ring, **kwargs), ring


def test_an_unchanged_envelope_is_opened_from_memory_once_it_was_read() -> None:
    enc, cipher = counting(["user.email", "user.phone", "user.profile"])
    stored = enc.encrypt_data("user", "user/a", {"email": SECRET, "phone": "+1 555 0100"})
    for _ in range(3):
        assert enc.decrypt_data("user", "user/a", copy.deepcopy(stored)) == {
            "email": SECRET,
            "phone": "+1 555 0100",
        }
    assert cipher.decrypts == 2  # each field once, then from memory
    # another instance (another process) does the same with what it reads
    reader, reader_cipher = counting(["user.email", "user.phone", "user.profile"])
    for _ in range(3):
        assert reader.decrypt_data("user", "user/a", copy.deepcopy(stored))["email"] == SECRET
    assert reader_cipher.decrypts == 2


def test_a_remembered_envelope_still_fails_when_moved_or_altered() -> None:
    """Memory is keyed by the exact text, storage key, scope and path: anything else is decrypted again."""
    enc = FieldEncryption(["user.email", "user.phone", "private.email"], ring1())
    stored = enc.encrypt_data("user", "user/alice", {"email": SECRET, "phone": "+1 555 0100"})
    assert enc.decrypt_data("user", "user/alice", copy.deepcopy(stored))["email"] == SECRET
    with pytest.raises(DecryptionError, match="authentication failed"):
        enc.decrypt_data("user", "user/mallory", {"email": stored["email"]})
    with pytest.raises(DecryptionError, match=re.escape("'user.phone'")):
        enc.decrypt_data("user", "user/alice", {"phone": stored["email"]})
    with pytest.raises(DecryptionError, match="authentication failed"):
        enc.decrypt_data("private", "user/alice", {"email": stored["email"]})
    text = envelope_text(stored, "email")
    flipped = text[:-3] + ("B" if text[-3] == "A" else "A") + text[-2:]
    with pytest.raises(DecryptionError):
        enc.decrypt_data("user", "user/alice", {"email": {"$enc": flipped}})
    with pytest.raises(DecryptionError, match="malformed"):
        enc.decrypt_data("user", "user/alice", {"email": {"$enc": text, "extra": 1}})


def test_a_remembered_envelope_under_a_dropped_key_fails_with_the_new_ring() -> None:
    old = FieldEncryption(["user.email"], KeyRing({"k1": KEY1}))
    stored = old.encrypt_data("user", "user/a", {"email": SECRET})
    assert old.decrypt_data("user", "user/a", copy.deepcopy(stored)) == {"email": SECRET}
    rotated = old.with_keys(KeyRing({"k2": KEY2}))
    with pytest.raises(DecryptionError, match="does not hold"):
        rotated.decrypt_data("user", "user/a", copy.deepcopy(stored))


def test_decrypted_cache_off_decrypts_every_time() -> None:
    enc, cipher = counting(["user.email", "user.phone", "user.profile"], decrypted_cache=0)
    stored = enc.encrypt_data("user", "user/a", {"email": SECRET})
    for _ in range(3):
        assert enc.decrypt_data("user", "user/a", copy.deepcopy(stored)) == {"email": SECRET}
    assert cipher.decrypts == 3
    assert "decrypted_cache=0" in repr(enc) and SECRET not in repr(enc)


def test_decrypted_cache_is_bounded_and_skips_large_values() -> None:
    enc, cipher = counting(["user.email", "user.profile"], decrypted_cache=4)
    docs = {
        f"user/{i}": enc.encrypt_data("user", f"user/{i}", {"email": f"u{i}@example.com"}) for i in range(6)
    }
    for key in (*docs, *reversed(docs)):
        assert enc.decrypt_data("user", key, copy.deepcopy(docs[key]))["email"].endswith("@example.com")
    # six first reads; then two generations of two: the four read last came from memory, the two
    # read first had to be decrypted again
    assert cipher.decrypts == 8
    big = {"email": SECRET, "profile": {"note": "x" * 2000}}
    stored = enc.encrypt_data("user", "user/big", big)
    for _ in range(2):
        assert enc.decrypt_data("user", "user/big", copy.deepcopy(stored)) == big
    assert cipher.decrypts == 11  # the 2 KB profile is decrypted each time; the small email once
    enc.forget_decrypted()
    enc.decrypt_data("user", "user/big", copy.deepcopy(stored))
    assert cipher.decrypts == 13


@pytest.mark.parametrize("size", [-1, 1.5, "10", None])
def test_decrypted_cache_must_be_a_count(size: Any) -> None:
    with pytest.raises(ValueError, match="decrypted_cache must be 0"):
        user_enc(decrypted_cache=size)


# -- needs_reencrypt and rotation ----------------------------------------------------------------------


def test_rotation_keeps_documents_readable_and_new_writes_use_the_new_key() -> None:
    old = user_enc()
    stored_old = old.encrypt_data("user", "user/a", {"email": SECRET, "phone": "1"})
    ring = old.keys.with_key("k2", KEY2, primary=True)
    new = old.with_keys(ring)
    assert new.needs_reencrypt("user", stored_old)
    assert new.decrypt_data("user", "user/a", copy.deepcopy(stored_old)) == {"email": SECRET, "phone": "1"}
    stored_new = new.encrypt_data("user", "user/a", {"email": SECRET, "phone": "1"})
    assert envelope_text(stored_new, "email").startswith("v1.k2.")
    assert not new.needs_reencrypt("user", stored_new)
    # Mixed documents (one field under each key) need rewriting, and read.
    mixed = {"email": stored_old["email"], "phone": stored_new["phone"]}
    assert new.needs_reencrypt("user", mixed)
    assert new.decrypt_data("user", "user/a", mixed) == {"email": SECRET, "phone": "1"}
    # Once the old key is gone, old envelopes fail closed.
    with pytest.raises(DecryptionError, match="'k1'"):
        new.with_keys(ring.without_key("k1")).decrypt_data("user", "user/a", stored_old)


def test_needs_reencrypt_flags_anything_not_under_the_primary() -> None:
    enc = user_enc()
    assert not enc.needs_reencrypt("user", {})
    assert not enc.needs_reencrypt("conversation", {"email": SECRET})
    assert enc.needs_reencrypt("user", {"email": SECRET})
    assert enc.needs_reencrypt("user", {"email": {"$enc": "nonsense"}})
    assert enc.needs_reencrypt("user", {"email": {"$enc": "v1.k10.AAAA"}})


# -- the key ring --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "primary", "message"),
    [
        ({"k1": bytes(31)}, None, "'k1' is 31 bytes"),
        ({"k1": bytes(33)}, None, "'k1' is 33 bytes"),
        ({"k1": "a" * 32}, None, "is a str"),
        ({"k1": 12}, None, "must be bytes"),
        ({}, None, "at least one key"),
        ({"": KEY1}, None, "key id '' is invalid"),
        ({"a.b": KEY1}, None, "no '.'"),
        ({"x" * 65: KEY1}, None, "is invalid"),
        ({"k1": KEY1, "k2": KEY2}, None, "needs primary"),
        ({"k1": KEY1}, "k2", "'k2' is not in the ring"),
    ],
)
def test_key_ring_validates_at_construction(keys: Any, primary: str | None, message: str) -> None:
    with pytest.raises(KeyRingError, match=message):
        KeyRing(keys, primary=primary)


def test_key_ring_errors_are_value_errors_in_the_tree() -> None:
    assert issubclass(KeyRingError, ValueError) and issubclass(KeyRingError, TurnStateError)


def test_key_ring_rotation_operations() -> None:
    ring = ring1().with_key("k2", KEY2)
    assert ring.primary == "k1" and ring.ids == ("k1", "k2") and "k2" in ring and len(ring) == 2
    promoted = ring.with_primary("k2")
    assert promoted.primary == "k2" and ring.primary == "k1"
    with pytest.raises(KeyRingError, match="already in the ring"):
        ring.with_key("k2", KEY1)
    with pytest.raises(KeyRingError, match="not in the ring"):
        ring.with_primary("k3")
    with pytest.raises(KeyRingError, match="is the primary"):
        promoted.without_key("k2")
    with pytest.raises(KeyRingError, match="not in the ring"):
        promoted.without_key("k3")
    assert promoted.without_key("k1").ids == ("k2",)
    assert len(KeyRing.generate_key()) == 32


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_from_env_reads_ids_and_makes_the_first_primary() -> None:
    spec = f" new:{base64.urlsafe_b64encode(KEY2).decode().rstrip('=')} , old:{b64(KEY1)} "
    ring = KeyRing.from_env("KEYS", environ={"KEYS": spec})
    assert ring.primary == "new" and ring.ids == ("new", "old")
    # The parsed keys are the real ones: what one ring encrypts, an equal ring decrypts.
    enc = FieldEncryption(["user.email"], ring)
    stored = enc.encrypt_data("user", "user/a", {"email": SECRET})
    same = FieldEncryption(["user.email"], KeyRing({"new": KEY2}))
    assert same.decrypt_data("user", "user/a", stored) == {"email": SECRET}


def test_from_env_with_the_variable_unset_fails_at_start() -> None:
    with pytest.raises(KeyRingError, match="'TURNSTATE_KEYS' is not set"):
        KeyRing.from_env(environ={})


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNSTATE_KEYS", f"k1:{b64(KEY1)}")
    assert KeyRing.from_env().ids == ("k1",)
    monkeypatch.delenv("TURNSTATE_KEYS")
    with pytest.raises(KeyRingError, match="not set"):
        KeyRing.from_env()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        (f"k1:{b64(bytes(31))}", "entry 1 \\(key id 'k1'\\): the key is 31 bytes"),
        (f"k1:{b64(KEY1)},k2:{b64(bytes(64))}", "entry 2 \\(key id 'k2'\\): the key is 64 bytes"),
        (f"k1{b64(KEY1)}", "has no ':'"),
        (f"k1:{b64(KEY1)},k1:{b64(KEY2)}", "'k1' appears more than once"),
        (f"a.b:{b64(KEY1)}", "no '.'"),
        (f":{b64(KEY1)}", "key id '' is invalid"),
        ("k1:not base64 at all!", "not valid base64"),
        ("k1:ключ", "not valid base64"),
    ],
)
def test_from_env_rejects_bad_specs_without_showing_key_text(spec: str, message: str) -> None:
    with pytest.raises(KeyRingError, match=message) as info:
        KeyRing.from_env("KEYS", environ={"KEYS": spec})
    assert "'KEYS'" in str(info.value)
    for part in spec.split(","):
        text = part.partition(":")[2].strip()
        if len(text) > 4:
            assert text not in str(info.value)


async def test_load_keys_accepts_rings_providers_and_async_callables(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = ring1()

    class Vault:
        async def load(self) -> KeyRing:
            return ring

    async def from_callable() -> KeyRing:
        return ring

    async def wrong() -> Any:
        return {"k1": KEY1}

    assert await load_keys(ring) is ring
    assert await load_keys(Vault()) is ring
    assert await load_keys(from_callable) is ring
    monkeypatch.setenv("MY_KEYS", f"env:{b64(KEY1)}")
    assert (await load_keys(EnvKeys("MY_KEYS"))).ids == ("env",)
    with pytest.raises(KeyRingError, match="returned dict, not a KeyRing"):
        await load_keys(wrong)


def test_field_encryption_needs_a_resolved_ring() -> None:
    with pytest.raises(KeyRingError, match="load_keys"):
        FieldEncryption(["user.email"], EnvKeys())  # type: ignore[arg-type]


# -- nothing secret in messages or reprs ---------------------------------------------------------------


def _key_forms(key: bytes) -> list[str]:
    return [
        key.hex(),
        base64.b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
        repr(key),
    ]


def _all_text(exc: BaseException) -> str:
    parts = []
    seen: BaseException | None = exc
    while seen is not None:
        parts.append(f"{seen!s} {seen!r}")
        seen = seen.__cause__ or seen.__context__
    return " ".join(parts)


def test_no_message_or_repr_contains_plaintext_or_key_bytes() -> None:
    key = os.urandom(32)
    ring = KeyRing({"k1": key, "k2": KEY2}, primary="k1")
    enc = FieldEncryption(["user.email", "user.profile"], ring)
    stored = enc.encrypt_data("user", "user/a", {"email": SECRET, "profile": {"name": SECRET}})
    texts = [repr(ring), str(ring), repr(enc), repr(EnvKeys()), repr(enc.redact("user", {"email": SECRET}))]
    failures: list[BaseException] = []

    def collect(call: Any) -> None:
        try:
            call()
        except TurnStateError as exc:
            failures.append(exc)
        else:  # pragma: no cover - each call below must fail
            raise AssertionError("expected an error")

    collect(lambda: enc.decrypt_data("user", "user/b", copy.deepcopy(stored)))
    collect(lambda: enc.decrypt_data("user", "user/a", {"email": stored["profile"]}))
    collect(lambda: enc.decrypt_data("user", "user/a", {"email": SECRET}))
    collect(lambda: enc.decrypt_data("user", "user/a", {"email": {"$enc": SECRET}}))
    collect(
        lambda: FieldEncryption(["user.email"], KeyRing({"k2": KEY2})).decrypt_data("user", "user/a", stored)
    )
    collect(lambda: KeyRing({"k1": key[:31]}))
    collect(lambda: KeyRing.from_string(f"k1:{b64(key[:31])}"))
    collect(lambda: KeyRing.from_string(f"k1:{b64(key)}!"))
    collect(lambda: KeyRing({"k1": b64(key)}))  # type: ignore[dict-item]
    texts += [_all_text(exc) for exc in failures]
    for text in texts:
        assert SECRET not in text
        for form in [*_key_forms(key), *_key_forms(key[:31])]:
            assert form not in text
        assert "alice" not in text


# -- the matcher against a direct reading of the rules -------------------------------------------------

_SEGMENTS = st.sampled_from(["a", "b", "c"])
_PATTERN = st.lists(st.one_of(_SEGMENTS, st.just("*")), min_size=1, max_size=4).map(tuple)


def _reference_covers(patterns: list[tuple[str, ...]], path: tuple[str, ...]) -> bool:
    """Covered: some pattern matches ``path`` or one of its ancestors, segment by segment."""
    return any(
        len(p) <= len(path) and all(want in ("*", got) for want, got in zip(p, path, strict=False))
        for p in patterns
    )


def _reference_along(patterns: list[tuple[str, ...]], path: tuple[str, ...]) -> bool:
    """Along: some pattern goes through ``path`` to a field below it."""
    return any(
        len(p) > len(path) and all(want in ("*", got) for want, got in zip(p, path, strict=False))
        for p in patterns
    )


def _value_at(data: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        data = data[name]
    return data


def _tree(depth: int) -> st.SearchStrategy[Any]:
    leaf = st.integers(0, 9)
    if depth == 0:
        return leaf
    return st.one_of(leaf, st.dictionaries(_SEGMENTS, _tree(depth - 1), max_size=3))


def _envelope_paths(data: Any, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    if is_envelope(data):
        return {path}
    if isinstance(data, dict):
        return set().union(*(_envelope_paths(v, (*path, k)) for k, v in data.items()))
    return set()


def _present_paths(data: Any, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    if isinstance(data, dict):
        for k, v in data.items():
            out.add((*path, k))
            out |= _present_paths(v, (*path, k))
    return out


@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(_PATTERN, min_size=1, max_size=5),
    data=st.dictionaries(_SEGMENTS, _tree(3), max_size=3),
)
def test_matcher_agrees_with_the_rules(patterns: list[tuple[str, ...]], data: dict[str, Any]) -> None:
    """covers() follows the pattern rules, and envelopes land on the outermost covered fields and on the
    values other than objects where a pattern goes through an object."""
    enc = FieldEncryption([".".join(("user", *p)) for p in patterns], ring1())
    present = _present_paths(data)
    for path in present:
        assert enc.covers("user", path) == _reference_covers(patterns, path), path
    outermost = {
        p
        for p in present
        if not any(_reference_covers(patterns, p[:i]) for i in range(1, len(p)))
        and (
            _reference_covers(patterns, p)
            or (_reference_along(patterns, p) and type(_value_at(data, p)) is not dict)
        )
    }
    stored = enc.encrypt_data("user", "user/u", data)
    assert _envelope_paths(stored) == outermost
    assert enc.decrypt_data("user", "user/u", stored) == data
