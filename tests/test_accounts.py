"""Users, API keys, price alerts and notifications (lxdex.accounts): every
command and rejection reason, request verification, snapshots and replay
determinism."""

from __future__ import annotations

import doctest
import hashlib
import os
import subprocess
import sys
from decimal import Decimal

import pytest

pytest.importorskip("cryptography", reason="lxdex.accounts needs the `cryptography` package")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import lxdex.accounts as accounts_module  # noqa: E402
from lxdex.accounts import (  # noqa: E402
    MAX_ACTIVE_KEYS,
    MAX_ALERTS,
    NOTIFICATION_KINDS,
    SEALED_BYTES,
    AccountError,
    Accounts,
    AuthError,
    AuthFailure,
    KycStatus,
    Permission,
    generate_key_material,
    seal_secret,
    sign_request,
)

MASTER = bytes(range(32))
OTHER_MASTER = bytes(range(1, 33))
TS = 1_700_000_000_000
PROFILE = {"display_name": "Alice", "email": "alice@example.com", "country": "DE"}


def material(user_id: int, n: int = 0, master: bytes = MASTER):
    """Deterministic key material for tests (a gateway uses generate_key_material)."""
    api_key = f"K{user_id}x{n}y".ljust(24, "0")
    secret = hashlib.sha256(api_key.encode()).hexdigest()
    nonce = hashlib.sha256(b"nonce" + api_key.encode()).digest()[:12]
    return api_key, secret, seal_secret(master, user_id, api_key, secret, nonce)


def rejected(acc: Accounts, field: str, fn, *args, **kwargs) -> AccountError:
    """fn(*args) raises AccountError naming `field`, and the state is unchanged."""
    before = acc.snapshot()
    with pytest.raises(AccountError) as e:
        fn(*args, **kwargs)
    assert e.value.field == field, str(e.value)
    assert str(e.value).startswith(f"{field}: ")
    assert acc.snapshot() == before
    return e.value


@pytest.fixture
def acc():
    a = Accounts(MASTER)
    a.create_user(0, PROFILE, TS)
    a.create_user(1, {"display_name": "Bob", "email": "bob@example.org", "country": "us"}, TS + 1)
    return a


def with_key(acc, user_id=0, n=0, permissions="read,trade", **kw):
    api_key, secret, sealed = material(user_id, n)
    created = acc.create_api_key(user_id, api_key, sealed, permissions, TS + 10, **kw)
    assert created.secret == secret
    return api_key, secret


def test_module_doctest():
    result = doctest.testmod(accounts_module)
    assert result.attempted > 0 and result.failed == 0


# -- users --------------------------------------------------------------------


def test_create_user_and_query(acc):
    events = acc.create_user(2, {"display_name": "Carol Ünïcode", "email": "c.d+x@Mail.EXAMPLE.com",
                                 "country": "fr"}, TS + 5)
    assert events == [{"type": "user_created", "user_id": 2, "display_name": "Carol Ünïcode",
                       "email": "c.d+x@mail.example.com", "country": "FR", "created_at": TS + 5,
                       "kyc_status": "none", "kyc_level": 0, "status": "active", "ts": TS + 5}]
    assert acc.user(2) == {"user_id": 2, "display_name": "Carol Ünïcode", "email": "c.d+x@mail.example.com",
                           "country": "FR", "created_at": TS + 5, "kyc_status": "none", "kyc_level": 0,
                           "status": "active"}
    assert acc.user(1)["country"] == "US"
    assert len(acc) == 3 and 2 in acc and 3 not in acc and "2" not in acc
    assert acc.user_ids() == [0, 1, 2]


def test_user_ids_with_gaps_and_out_of_order():
    from lxdex.accounts import MAX_ID_GAP

    a = Accounts(MASTER)
    ids = (5, 0, 1000, 1, 3)
    for uid in ids:
        a.create_user(uid, {**PROFILE, "display_name": f"u{uid}"}, TS + uid)
    assert a.user_ids() == sorted(ids) and len(a) == 5
    for uid in ids:
        assert a.user(uid)["display_name"] == f"u{uid}" and a.user(uid)["created_at"] == TS + uid
    assert 2 not in a and 4 not in a and 999 not in a and 1001 not in a
    rejected(a, "user_id", a.user, 2)
    rejected(a, "user_id", a.notify, 4, "fill", {}, TS)
    rejected(a, "user_id", a.create_user, 1001 + MAX_ID_GAP, PROFILE, TS)
    a.create_user(1000 + MAX_ID_GAP, PROFILE, TS)
    a.create_user(2, PROFILE, TS)  # fills a hole
    assert len(a) == 7 and a.user_ids()[:5] == [0, 1, 2, 3, 5]
    # the same users created in another order: the same state
    b = Accounts(MASTER)
    for uid in sorted(ids):
        b.create_user(uid, {**PROFILE, "display_name": f"u{uid}"}, TS + uid)
    b.create_user(2, PROFILE, TS)
    b.create_user(1000 + MAX_ID_GAP, PROFILE, TS)
    assert a.snapshot() == b.snapshot() and a == b
    assert Accounts.restore(a.snapshot(), MASTER) == a


def test_profile_rewrites_compact_their_storage():
    a = Accounts(MASTER)
    for uid in range(40):
        a.create_user(uid, {**PROFILE, "display_name": f"user {uid}"}, TS)
    for rnd in range(30):  # ~70 KB of rewrites: the text arena compacts several times
        for uid in range(0, 40, 3):
            a.update_profile(uid, {"display_name": f"{'é' * 20} {uid} {rnd}", "email": f"u{uid}r{rnd}@example.com"}, TS)
    assert len(a._texts._arena) < 2 * 40 * 80
    for uid in range(40):
        u = a.user(uid)
        if uid % 3:
            assert (u["display_name"], u["email"]) == (f"user {uid}", "alice@example.com")
        else:
            assert (u["display_name"], u["email"]) == (f"{'é' * 20} {uid} 29", f"u{uid}r29@example.com")
    assert Accounts.restore(a.snapshot(), MASTER) == a


def test_many_keys_stay_findable():
    a = Accounts(MASTER)
    keys = {}
    for uid in range(25):
        a.create_user(uid, PROFILE, TS)
        for n in range(8):
            keys[material(uid, n)[0]] = uid
            api_key, _, sealed = material(uid, n)
            a.create_api_key(uid, api_key, sealed, "read", TS)
    for api_key, uid in keys.items():
        assert a.api_key(api_key)["user_id"] == uid
    assert a._keys.find("K0x0y" + "1" * 19) is None and a._keys.find("K0x0y\x00") is None


BAD_PROFILES = [
    ({"display_name": ""}, "display_name"),
    ({"display_name": "x" * 65}, "display_name"),
    ({"display_name": " Alice"}, "display_name"),
    ({"display_name": "Al\x00ice"}, "display_name"),
    ({"display_name": "Al\nice"}, "display_name"),
    ({"display_name": "Al\u2028ice"}, "display_name"),
    ({"display_name": "\ud800"}, "display_name"),
    ({"display_name": 7}, "display_name"),
    ({"email": "alice"}, "email"),
    ({"email": "alice@"}, "email"),
    ({"email": "@example.com"}, "email"),
    ({"email": "alice@example"}, "email"),
    ({"email": "al ice@example.com"}, "email"),
    ({"email": "alice..x@example.com"}, "email"),
    ({"email": "alice@-example.com"}, "email"),
    ({"email": "x" * 65 + "@example.com"}, "email"),
    ({"email": "a@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + "." + "e" * 63 + ".com"}, "email"),
    ({"email": "älice@example.com"}, "email"),
    ({"email": None}, "email"),
    ({"country": "XX"}, "country"),
    ({"country": "USA"}, "country"),
    ({"country": "D"}, "country"),
    ({"country": "ÄÖ"}, "country"),
    ({"country": 49}, "country"),
    ({"nickname": "al"}, "profile.nickname"),
    ({"created_at": 5}, "created_at"),
]


@pytest.mark.parametrize("change,field", BAD_PROFILES)
def test_create_user_rejects_bad_profile_fields(acc, change, field):
    rejected(acc, field, acc.create_user, 9, {**PROFILE, **change}, TS)
    if field not in ("profile.nickname", "created_at"):
        rejected(acc, field, acc.update_profile, 0, change, TS)


@pytest.mark.parametrize("missing", ["display_name", "email", "country"])
def test_create_user_requires_every_profile_field(acc, missing):
    profile = {k: v for k, v in PROFILE.items() if k != missing}
    rejected(acc, missing, acc.create_user, 9, profile, TS)


@pytest.mark.parametrize("user_id", [-1, 2**32, 2**32 - 1, True, "9", 9.0, None])
def test_create_user_rejects_bad_user_id(acc, user_id):
    rejected(acc, "user_id", acc.create_user, user_id, PROFILE, TS)


@pytest.mark.parametrize("ts", [-1, 2**63, True, 1.5, "1", None])
def test_commands_reject_bad_ts(acc, ts):
    rejected(acc, "ts", acc.create_user, 9, PROFILE, ts)
    rejected(acc, "ts", acc.set_status, 0, "suspended", ts)
    rejected(acc, "ts", acc.notify, 0, "system", {}, ts)


def test_create_user_rejects_duplicate_and_non_dict(acc):
    rejected(acc, "user_id", acc.create_user, 0, PROFILE, TS)
    rejected(acc, "profile", acc.create_user, 9, [("display_name", "x")], TS)
    rejected(acc, "profile", acc.create_user, 9, {1: "x", **PROFILE}, TS)


def test_update_profile(acc):
    events = acc.update_profile(0, {"display_name": "Alice B", "country": "DE", "email": "ALICE@EXAMPLE.COM"}, TS + 9)
    # country unchanged; the email's domain is case-folded, its local part is not
    assert events == [{"type": "user_updated", "user_id": 0,
                       "changes": {"display_name": "Alice B", "email": "ALICE@example.com"}, "ts": TS + 9}]
    assert acc.user(0)["display_name"] == "Alice B" and acc.user(0)["email"] == "ALICE@example.com"
    assert acc.update_profile(0, {"display_name": "Alice B"}, TS + 10) == []
    rejected(acc, "changes", acc.update_profile, 0, {}, TS)
    rejected(acc, "changes", acc.update_profile, 0, "x", TS)
    rejected(acc, "user_id", acc.update_profile, 7, {"display_name": "x"}, TS)
    rejected(acc, "created_at", acc.update_profile, 0, {"created_at": 1}, TS)


def test_set_kyc(acc):
    assert acc.set_kyc(0, "pending", 0, TS) == [
        {"type": "kyc_changed", "user_id": 0, "kyc_status": "pending", "kyc_level": 0, "ts": TS}]
    assert acc.set_kyc(0, KycStatus.VERIFIED, 1, TS)[0]["kyc_status"] == "verified"
    assert acc.set_kyc(0, "verified", 1, TS) == []  # no change
    acc.set_kyc(0, 3, 1, TS)  # rejected upgrade keeps level 1
    assert (acc.user(0)["kyc_status"], acc.user(0)["kyc_level"]) == ("rejected", 1)
    acc.set_kyc(0, "VERIFIED", 3, TS)
    assert (acc.user(0)["kyc_status"], acc.user(0)["kyc_level"]) == ("verified", 3)
    rejected(acc, "status", acc.set_kyc, 0, "approved", 1, TS)
    rejected(acc, "status", acc.set_kyc, 0, 4, 1, TS)
    rejected(acc, "status", acc.set_kyc, 0, None, 1, TS)
    rejected(acc, "level", acc.set_kyc, 0, "verified", 4, TS)
    rejected(acc, "level", acc.set_kyc, 0, "verified", -1, TS)
    rejected(acc, "level", acc.set_kyc, 0, "verified", "2", TS)
    rejected(acc, "level", acc.set_kyc, 0, "verified", 0, TS)
    rejected(acc, "level", acc.set_kyc, 0, "none", 1, TS)
    rejected(acc, "user_id", acc.set_kyc, 5, "verified", 1, TS)


def test_set_status(acc):
    assert acc.set_status(0, "suspended", TS) == [
        {"type": "user_status_changed", "user_id": 0, "status": "suspended", "ts": TS}]
    assert acc.user(0)["status"] == "suspended"
    assert acc.set_status(0, "suspended", TS) == []
    api_key, _, sealed = material(0)
    rejected(acc, "user_id", acc.create_api_key, 0, api_key, sealed, "read", TS)
    assert acc.set_status(0, "active", TS)[0]["status"] == "active"
    rejected(acc, "status", acc.set_status, 0, "banned", TS)
    rejected(acc, "user_id", acc.set_status, 9, "active", TS)


# -- API keys ---------------------------------------------------------------------


def test_create_api_key_returns_secret_once(acc):
    api_key, secret, sealed = material(0)
    created = acc.create_api_key(0, api_key, sealed, ["read", "trade"], TS + 3,
                                 ip_allow=["2001:db8::/32", "10.0.0.0/8", "10.0.0.0/8"], label="my bot")
    assert created.secret == secret
    assert created.events == [{"type": "api_key_created", "user_id": 0, "api_key": api_key,
                               "permissions": ["read", "trade"], "ip_allow": ["10.0.0.0/8", "2001:db8::/32"],
                               "label": "my bot", "created_at": TS + 3, "revoked_at": None, "ts": TS + 3}]
    info = acc.api_key(api_key)
    assert info == {k: v for k, v in created.events[0].items() if k not in ("type", "ts")}
    assert acc.api_keys(0) == [info] and acc.api_keys(1) == []
    # the plaintext secret is nowhere in the state or the events
    snap = acc.snapshot()
    assert secret.encode() not in snap and bytes.fromhex(secret).hex().encode() not in snap
    assert secret not in repr(created.events) and secret not in repr(acc.api_keys(0))


def test_generate_key_material_and_seal():
    a, b = generate_key_material(MASTER, 3), generate_key_material(MASTER, 3)
    assert a != b
    assert len(a.api_key) == 64 and a.api_key.isalnum() and a.api_key.isascii()
    assert len(a.secret) == 64 and int(a.secret, 16) >= 0
    assert len(a.sealed_secret) == SEALED_BYTES
    nonce = bytes(12)
    s1 = seal_secret(MASTER, 3, a.api_key, a.secret, nonce)
    assert s1 == seal_secret(MASTER, 3, a.api_key, a.secret, nonce)  # deterministic
    assert s1 != seal_secret(OTHER_MASTER, 3, a.api_key, a.secret, nonce)
    with pytest.raises(AccountError) as e:
        seal_secret(MASTER, 3, a.api_key, a.secret, b"short")
    assert e.value.field == "nonce"
    with pytest.raises(AccountError) as e:
        seal_secret(MASTER, 3, a.api_key, "not hex", nonce)
    assert e.value.field == "secret"
    with pytest.raises(AccountError) as e:
        Accounts(b"short key")
    assert e.value.field == "master_key"
    with pytest.raises(AccountError) as e:
        Accounts(MASTER, max_notifications=0)
    assert e.value.field == "max_notifications"


def test_create_api_key_rejections(acc):
    api_key, _, sealed = material(0)
    cases = [
        ("user_id", (9, api_key, sealed, "read", TS), {}),
        ("api_key", (0, "short", sealed, "read", TS), {}),
        ("api_key", (0, "x" * 65, sealed, "read", TS), {}),
        ("api_key", (0, "abc-def-ghi-jkl-mno", sealed, "read", TS), {}),
        ("api_key", (0, 12345678901234567, sealed, "read", TS), {}),
        ("sealed_secret", (0, api_key, sealed[:-1], "read", TS), {}),
        ("sealed_secret", (0, api_key, sealed.hex(), "read", TS), {}),
        ("sealed_secret", (0, api_key, bytes(SEALED_BYTES), "read", TS), {}),
        ("sealed_secret", (0, api_key, material(0, master=OTHER_MASTER)[2], "read", TS), {}),  # other master key
        ("sealed_secret", (1, api_key, sealed, "read", TS), {}),  # sealed for user 0
        ("sealed_secret", (0, material(0, 1)[0], sealed, "read", TS), {}),  # sealed for another key
        ("permissions", (0, api_key, sealed, "", TS), {}),
        ("permissions", (0, api_key, sealed, "read,admin", TS), {}),
        ("permissions", (0, api_key, sealed, [], TS), {}),
        ("permissions", (0, api_key, sealed, 0, TS), {}),
        ("permissions", (0, api_key, sealed, 8, TS), {}),
        ("permissions", (0, api_key, sealed, True, TS), {}),
        ("permissions", (0, api_key, sealed, None, TS), {}),
        ("ip_allow", (0, api_key, sealed, "read,withdraw", TS), {}),
        ("ip_allow", (0, api_key, sealed, "withdraw", TS), {"ip_allow": []}),
        ("ip_allow", (0, api_key, sealed, "read", TS), {"ip_allow": "10.0.0.1"}),
        ("ip_allow", (0, api_key, sealed, "read", TS), {"ip_allow": 5}),
        ("ip_allow", (0, api_key, sealed, "read", TS), {"ip_allow": [f"10.0.0.{i}" for i in range(31)]}),
        ("ip_allow[1]", (0, api_key, sealed, "read", TS), {"ip_allow": ["10.0.0.1", "10.0.0.1/8"]}),
        ("ip_allow[0]", (0, api_key, sealed, "read", TS), {"ip_allow": ["999.0.0.1"]}),
        ("ip_allow[0]", (0, api_key, sealed, "read", TS), {"ip_allow": ["example.com"]}),
        ("ip_allow[0]", (0, api_key, sealed, "read", TS), {"ip_allow": [167772161]}),
        ("label", (0, api_key, sealed, "read", TS), {"label": "x" * 65}),
        ("label", (0, api_key, sealed, "read", TS), {"label": "bot\t1"}),
        ("label", (0, api_key, sealed, "read", TS), {"label": None}),
        ("ts", (0, api_key, sealed, "read", -5), {}),
    ]
    for field, args, kwargs in cases:
        rejected(acc, field, acc.create_api_key, *args, **kwargs)
    acc.create_api_key(0, api_key, sealed, Permission.READ | Permission.WITHDRAW, TS, ip_allow=["10.0.0.1"])
    rejected(acc, "api_key", acc.create_api_key, 0, api_key, sealed, "read", TS)  # duplicate


def test_permission_forms(acc):
    for n, perms, names in [(0, "read", ["read"]), (1, 3, ["read", "trade"]), (2, ("trade",), ["trade"]),
                            (3, Permission.READ | Permission.TRADE, ["read", "trade"]),
                            (4, " Read , TRADE", ["read", "trade"])]:
        api_key, _, sealed = material(0, n)
        assert acc.create_api_key(0, api_key, sealed, perms, TS).events[0]["permissions"] == names


def test_active_key_limit_counts_only_active_keys(acc):
    keys = [with_key(acc, 0, n)[0] for n in range(MAX_ACTIVE_KEYS)]
    api_key, _, sealed = material(0, MAX_ACTIVE_KEYS)
    rejected(acc, "api_key", acc.create_api_key, 0, api_key, sealed, "read", TS)
    acc.revoke_api_key(0, keys[3], TS + 20)
    acc.create_api_key(0, api_key, sealed, "read", TS + 21)
    assert len(acc.api_keys(0)) == MAX_ACTIVE_KEYS
    assert len(acc.api_keys(0, include_revoked=True)) == MAX_ACTIVE_KEYS + 1
    # oldest first: by created_at, then api_key
    listed = acc.api_keys(0, include_revoked=True)
    assert listed == sorted(listed, key=lambda d: (d["created_at"], d["api_key"]))


def test_verify_request_success(acc):
    api_key, secret = with_key(acc, 1)
    payload = b"symbol=BTC-USD&side=BUY&type=LIMIT&quantity=1&price=30000&timestamp=1700000000000"
    sig = sign_request(secret, payload)
    # Binance's documented construction: HMAC-SHA256 over the query string with the secret's characters
    import hmac as _hmac
    assert sig == _hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    assert acc.verify_request(api_key, payload, sig, None, "trade") == 1
    assert acc.verify_request(api_key, payload, sig.upper(), "1.2.3.4", Permission.READ) == 1
    assert acc.verify_request(api_key, payload.decode(), sig, None, "read,trade") == 1


def auth_fails(acc, reason: AuthFailure, field: str, *args):
    with pytest.raises(AuthError) as e:
        acc.verify_request(*args)
    assert e.value.reason == reason and e.value.field == field, str(e.value)
    assert isinstance(e.value, AccountError) and isinstance(e.value, ValueError)
    return e.value


def test_verify_request_failures(acc):
    api_key, secret = with_key(acc, 0, permissions="read")
    p = b"timestamp=1"
    sig = sign_request(secret, p)
    auth_fails(acc, AuthFailure.UNKNOWN_KEY, "api_key", "A" * 64, p, sig, None, "read")
    auth_fails(acc, AuthFailure.UNKNOWN_KEY, "api_key", None, p, sig, None, "read")
    auth_fails(acc, AuthFailure.BAD_SIGNATURE, "signature", api_key, b"timestamp=2", sig, None, "read")
    auth_fails(acc, AuthFailure.BAD_SIGNATURE, "signature", api_key, p, sign_request("0" * 64, p), None, "read")
    auth_fails(acc, AuthFailure.BAD_SIGNATURE, "signature", api_key, p, sig[:-1], None, "read")
    auth_fails(acc, AuthFailure.BAD_SIGNATURE, "signature", api_key, p, "zz" + sig[2:], None, "read")
    auth_fails(acc, AuthFailure.BAD_SIGNATURE, "signature", api_key, p, "", None, "read")
    auth_fails(acc, AuthFailure.BAD_SIGNATURE, "signature", api_key, p, None, None, "read")
    auth_fails(acc, AuthFailure.BAD_SIGNATURE, "signature", api_key, p, "é" * 64, None, "read")
    e = auth_fails(acc, AuthFailure.PERMISSION_DENIED, "required_permission", api_key, p, sig, None, "trade")
    assert "trade" in str(e)
    auth_fails(acc, AuthFailure.PERMISSION_DENIED, "required_permission", api_key, p, sig, None, "withdraw")
    # a signature check comes before the permission check: no probing of permissions without the secret
    auth_fails(acc, AuthFailure.BAD_SIGNATURE, "signature", api_key, b"x", sig, None, "withdraw")
    with pytest.raises(AccountError) as ee:
        acc.verify_request(api_key, p, sig, None, "admin")
    assert ee.value.field == "required_permission" and not isinstance(ee.value, AuthError)


def test_ip_allow_list_with_cidr(acc):
    api_key, secret = with_key(acc, 0, permissions="read,trade,withdraw",
                               ip_allow=["192.168.1.0/24", "203.0.113.7", "2001:db8:abcd::/48"])
    p = b"amount=1"
    sig = sign_request(secret, p)
    for ip in ["192.168.1.0", "192.168.1.77", "192.168.1.255", "203.0.113.7", "2001:db8:abcd:12::1",
               "::ffff:192.168.1.5", "::ffff:203.0.113.7"]:
        assert acc.verify_request(api_key, p, sig, ip, "withdraw") == 0, ip
    for ip in ["192.168.2.1", "203.0.113.8", "10.0.0.1", "2001:db8:abce::1", "::1", "::ffff:10.0.0.1"]:
        auth_fails(acc, AuthFailure.IP_NOT_ALLOWED, "ip", api_key, p, sig, ip, "withdraw")
    auth_fails(acc, AuthFailure.IP_NOT_ALLOWED, "ip", api_key, p, sig, None, "read")
    auth_fails(acc, AuthFailure.IP_NOT_ALLOWED, "ip", api_key, p, sig, "not-an-ip", "read")
    # the IP check comes before the signature check
    auth_fails(acc, AuthFailure.IP_NOT_ALLOWED, "ip", api_key, p, "00" * 32, "10.0.0.1", "read")


def test_revoke(acc):
    api_key, secret = with_key(acc, 0)
    other_key, _ = with_key(acc, 1)
    sig = sign_request(secret, b"q")
    rejected(acc, "api_key", acc.revoke_api_key, 1, api_key, TS)  # not Bob's key
    rejected(acc, "api_key", acc.revoke_api_key, 0, "B" * 20, TS)
    rejected(acc, "user_id", acc.revoke_api_key, 9, api_key, TS)
    assert acc.revoke_api_key(0, api_key, TS + 50) == [
        {"type": "api_key_revoked", "user_id": 0, "api_key": api_key, "ts": TS + 50}]
    assert acc.revoke_api_key(0, api_key, TS + 51) == []
    auth_fails(acc, AuthFailure.REVOKED, "api_key", api_key, b"q", sig, None, "read")
    assert acc.api_key(api_key)["revoked_at"] == TS + 50
    assert acc.api_keys(0) == [] and len(acc.api_keys(0, include_revoked=True)) == 1
    assert acc.api_keys(1)[0]["api_key"] == other_key
    rejected(acc, "api_key", acc.update_api_key, 0, api_key, TS, label="x")
    # the sealed secret is erased
    snap = acc.snapshot().decode()
    assert material(0)[2].hex() not in snap and material(1)[2].hex() in snap


def test_update_api_key(acc):
    api_key, secret = with_key(acc, 0, permissions="read", label="a")
    assert acc.update_api_key(0, api_key, TS + 1, permissions="read,trade", label="b") == [
        {"type": "api_key_updated", "user_id": 0, "api_key": api_key,
         "changes": {"permissions": ["read", "trade"], "label": "b"}, "ts": TS + 1}]
    assert acc.update_api_key(0, api_key, TS + 2, permissions=3, label="b") == []
    rejected(acc, "ip_allow", acc.update_api_key, 0, api_key, TS, permissions="withdraw")
    acc.update_api_key(0, api_key, TS + 3, permissions="read,withdraw", ip_allow=["10.0.0.0/8"])
    rejected(acc, "ip_allow", acc.update_api_key, 0, api_key, TS, ip_allow=None)
    rejected(acc, "ip_allow[0]", acc.update_api_key, 0, api_key, TS, ip_allow=["10.0.0.0/33"])
    rejected(acc, "permissions", acc.update_api_key, 0, api_key, TS, permissions="")
    rejected(acc, "label", acc.update_api_key, 0, api_key, TS, label="\x07")
    rejected(acc, "api_key", acc.update_api_key, 1, api_key, TS, label="x")
    sig = sign_request(secret, b"w")
    assert acc.verify_request(api_key, b"w", sig, "10.9.9.9", "withdraw") == 0
    auth_fails(acc, AuthFailure.PERMISSION_DENIED, "required_permission", api_key, b"w", sig, "10.9.9.9", "trade")
    acc.update_api_key(0, api_key, TS + 4, permissions="read", ip_allow=None)
    assert acc.verify_request(api_key, b"w", sig, None, "read") == 0


# -- price alerts ---------------------------------------------------------------------


def test_price_alerts_fire_in_alert_id_order(acc):
    acc.create_user(2, {**PROFILE, "display_name": "Carol"}, TS)
    specs = [  # user, market, condition, price
        (0, "BTC-USD", "above", "31000"),   # 1
        (1, "BTC-USD", "below", "29000"),   # 2
        (2, "BTC-USD", "above", "30500.5"),  # 3
        (0, "ETH-USD", "above", "1000"),    # 4
        (1, "BTC-USD", "above", "30000"),   # 5
        (2, "BTC-USD", "above", "32000"),   # 6
        (0, "BTC-USD", "below", "30000"),   # 7
    ]
    for i, (u, m, c, p) in enumerate(specs, start=1):
        ev = acc.add_price_alert(u, m, c, p, TS + i)
        assert ev == [{"type": "price_alert_created", "alert_id": i, "user_id": u, "market": m,
                       "condition": c, "price": p, "ts": TS + i}]
    assert acc.on_price("BTC-USD", "30000", TS + 100) == [  # == fires both above and below
        {"type": "notification", "user_id": 1, "notification_id": 1, "kind": "price_alert", "ts": TS + 100,
         "payload": {"alert_id": 5, "market": "BTC-USD", "condition": "above", "price": "30000",
                     "observed_price": "30000"}},
        {"type": "notification", "user_id": 0, "notification_id": 2, "kind": "price_alert", "ts": TS + 100,
         "payload": {"alert_id": 7, "market": "BTC-USD", "condition": "below", "price": "30000",
                     "observed_price": "30000"}},
    ]
    assert acc.on_price("BTC-USD", "30000", TS + 101) == []  # one-shot
    fired = acc.on_price("BTC-USD", Decimal("31000.00"), TS + 102)
    assert [(e["user_id"], e["payload"]["alert_id"], e["payload"]["observed_price"]) for e in fired] == [
        (0, 1, "31000"), (2, 3, "31000")]
    assert [a["alert_id"] for a in acc.price_alerts(0)] == [4]
    assert [a["alert_id"] for a in acc.price_alerts(1)] == [2]
    assert acc.on_price("SOL-USD", "1", TS) == []
    fired = acc.on_price("BTC-USD", "1", TS + 103)
    assert [e["payload"]["alert_id"] for e in fired] == [2]
    assert acc.price_alerts(2) == [{"alert_id": 6, "user_id": 2, "market": "BTC-USD", "condition": "above",
                                    "price": "32000", "created_at": TS + 6}]
    assert acc.notifications(1)[0]["payload"]["alert_id"] == 2  # delivered to the inbox
    assert acc.unread_count(1) == 2


def test_price_alert_rejections_and_cancel(acc):
    for field, args in [
        ("user_id", (9, "BTC-USD", "above", "1")),
        ("market", (0, "btc-usd", "above", "1")),
        ("market", (0, "BTCUSD", "above", "1")),
        ("market", (0, None, "above", "1")),
        ("condition", (0, "BTC-USD", "over", "1")),
        ("price", (0, "BTC-USD", "above", 1.5)),
        ("price", (0, "BTC-USD", "above", "0")),
        ("price", (0, "BTC-USD", "above", "-3")),
        ("price", (0, "BTC-USD", "above", "abc")),
        ("price", (0, "BTC-USD", "above", "NaN")),
        ("price", (0, "BTC-USD", "above", "Infinity")),
        ("price", (0, "BTC-USD", "above", "1e18")),
        ("price", (0, "BTC-USD", "above", "0.0000000000000000001")),
        ("price", (0, "BTC-USD", "above", True)),
        ("price", (0, "BTC-USD", "above", None)),
    ]:
        rejected(acc, field, acc.add_price_alert, *args, TS)
    rejected(acc, "ts", acc.add_price_alert, 0, "BTC-USD", "above", "1", -1)
    # canonical decimals
    ev = acc.add_price_alert(0, "BTC-USD", "above", "30000.500", TS)
    assert ev[0]["price"] == "30000.5" and ev[0]["alert_id"] == 1
    assert acc.add_price_alert(0, "BTC-USD", "below", 2, TS)[0]["price"] == "2"
    assert acc.add_price_alert(0, "BTC-USD", "below", "1E+2", TS)[0]["price"] == "100"
    assert acc.add_price_alert(0, "BTC-USD", "below", "0.000000000000000001", TS)[0]["price"] == \
        "0.000000000000000001"
    rejected(acc, "alert_id", acc.cancel_price_alert, 1, 1, TS)  # Bob does not own it
    rejected(acc, "alert_id", acc.cancel_price_alert, 0, 99, TS)
    rejected(acc, "alert_id", acc.cancel_price_alert, 0, "1", TS)
    assert acc.cancel_price_alert(0, 1, TS + 1) == [
        {"type": "price_alert_cancelled", "alert_id": 1, "user_id": 0, "ts": TS + 1}]
    rejected(acc, "alert_id", acc.cancel_price_alert, 0, 1, TS)
    assert acc.on_price("BTC-USD", "40000", TS) == []
    rejected(acc, "market", acc.on_price, "BTC", "1", TS)
    rejected(acc, "price", acc.on_price, "BTC-USD", 3.0, TS)
    for _ in range(MAX_ALERTS - 3):
        acc.add_price_alert(0, "ETH-USD", "above", "5", TS)
    rejected(acc, "user_id", acc.add_price_alert, 0, "ETH-USD", "above", "5", TS)
    acc.add_price_alert(1, "ETH-USD", "above", "5", TS)  # the limit is per user
    assert len(acc.on_price("ETH-USD", "5", TS)) == MAX_ALERTS - 2


# -- notifications ------------------------------------------------------------------------


def test_notify_and_read_state():
    acc = Accounts(MASTER, max_notifications=5)
    acc.create_user(0, PROFILE, TS)
    ev = acc.notify(0, "fill", {"market": "BTC-USD", "order_id": 7, "qty": "0.5", "maker": True}, TS)
    assert ev == [{"type": "notification", "user_id": 0, "notification_id": 1, "kind": "fill", "ts": TS,
                   "payload": {"maker": True, "market": "BTC-USD", "order_id": 7, "qty": "0.5"}}]
    for i in range(2, 9):
        acc.notify(0, "order_cancelled", {"order_id": i, "reason": "expired"}, TS + i)
    kept = acc.notifications(0)
    assert [n["notification_id"] for n in kept] == [8, 7, 6, 5, 4]  # bounded, newest first
    assert kept[0] == {"notification_id": 8, "kind": "order_cancelled", "ts": TS + 8, "read": False,
                       "payload": {"order_id": 8, "reason": "expired"}}
    assert acc.unread_count(0) == 5
    assert acc.mark_read(0, [5, 7, 1, 999], TS + 20) == [
        {"type": "notifications_read", "user_id": 0, "notification_ids": [5, 7], "ts": TS + 20}]
    assert acc.mark_read(0, [5], TS + 21) == []
    assert [n["notification_id"] for n in acc.notifications(0, unread_only=True)] == [8, 6, 4]
    assert [n["notification_id"] for n in acc.notifications(0, limit=2)] == [8, 7]
    assert acc.unread_count(0) == 3
    assert acc.mark_read(0, None, TS + 22)[0]["notification_ids"] == [4, 6, 8]
    assert acc.unread_count(0) == 0 and acc.mark_read(0, None, TS) == []
    acc.notify(0, "liquidation", {}, TS + 30)
    assert [n["notification_id"] for n in acc.notifications(0, unread_only=True)] == [9]
    assert len(acc.notifications(0)) == 5


def test_notify_rejections(acc):
    for field, args in [
        ("user_id", (5, "fill", {})),
        ("kind", (0, "spam", {})),
        ("kind", (0, None, {})),
        ("payload", (0, "fill", [])),
        ("payload", (0, "fill", {"Bad Key": 1})),
        ("payload", (0, "fill", {1: 1})),
        ("payload", (0, "fill", {f"k{i}": i for i in range(33)})),
        ("payload.price", (0, "fill", {"price": 1.5})),
        ("payload.x", (0, "fill", {"x": [1]})),
        ("payload.x", (0, "fill", {"x": {"y": 1}})),
        ("payload.x", (0, "fill", {"x": "y" * 257})),
        ("payload.x", (0, "fill", {"x": 2**63})),
        ("payload.x", (0, "fill", {"x": "\udc00"})),
        ("ts", (0, "fill", {}, -1)),
    ]:
        rejected(acc, field, acc.notify, *(args if len(args) == 4 else (*args, TS)))
    rejected(acc, "notification_ids", acc.mark_read, 0, [True], TS)
    rejected(acc, "notification_ids", acc.mark_read, 0, "1", TS)
    rejected(acc, "notification_ids", acc.mark_read, 0, 1, TS)
    rejected(acc, "notification_ids", acc.mark_read, 0, [0], TS)
    rejected(acc, "user_id", acc.mark_read, 5, None, TS)
    rejected(acc, "user_id", acc.notifications, 5)
    rejected(acc, "limit", acc.notifications, 0, limit=-1)
    assert set(NOTIFICATION_KINDS) >= {"fill", "order_cancelled", "liquidation", "price_alert"}
    for kind in NOTIFICATION_KINDS:
        acc.notify(1, kind, {"reason": "stp"}, TS)


# -- snapshots ------------------------------------------------------------------------


def busy(acc: Accounts) -> Accounts:
    acc.create_user(7, {**PROFILE, "display_name": "Dana"}, TS)
    acc.set_kyc(0, "verified", 2, TS + 1)
    acc.set_status(1, "suspended", TS + 2)
    with_key(acc, 0, 0, ip_allow=["10.0.0.0/8", "::1"], label="bot")
    with_key(acc, 0, 1, permissions="read,withdraw", ip_allow=["1.2.3.4"])
    k2, _ = with_key(acc, 7, 2)
    acc.revoke_api_key(7, k2, TS + 11)
    acc.add_price_alert(0, "BTC-USD", "above", "30000", TS + 12)
    acc.add_price_alert(7, "BTC-USD", "below", "20000.25", TS + 13)
    acc.add_price_alert(7, "ETH-USD", "above", "2000", TS + 14)
    acc.on_price("BTC-USD", "30001", TS + 15)
    acc.notify(1, "liquidation", {"market": "BTC-USD", "note": "ünïcode"}, TS + 16)
    acc.notify(7, "fill", {"order_id": 3}, TS + 17)
    acc.mark_read(7, None, TS + 18)
    return acc


def views(acc: Accounts) -> list:
    out = [acc.user_ids(), acc.state_hash()]
    for uid in acc.user_ids():
        out += [acc.user(uid), acc.api_keys(uid, include_revoked=True), acc.price_alerts(uid),
                acc.notifications(uid), acc.unread_count(uid)]
    return out


def test_snapshot_restore_roundtrip(acc):
    busy(acc)
    snap = acc.snapshot()
    again = Accounts.restore(snap, MASTER)
    assert again == acc and again.snapshot() == snap and views(again) == views(acc)
    assert again.max_notifications == acc.max_notifications
    assert acc.state_hash() == hashlib.sha256(snap).hexdigest()
    # both go on identically: ids continue, keys verify
    for a in (acc, again):
        assert a.add_price_alert(0, "SOL-USD", "above", "1", TS + 30)[0]["alert_id"] == 4
        assert a.notify(0, "system", {}, TS + 31)[0]["notification_id"] == 4
        api_key, secret = material(0, 1)[:2]
        assert a.verify_request(api_key, b"x", sign_request(secret, b"x"), "1.2.3.4", "withdraw") == 0
        auth_fails(a, AuthFailure.REVOKED, "api_key", material(7, 2)[0], b"x", "", None, "read")
    assert acc.snapshot() == again.snapshot()
    assert material(0, 0)[1].encode() not in snap  # no plaintext secret


def test_snapshot_is_canonical_across_command_orders():
    a, b = Accounts(MASTER), Accounts(MASTER)
    a.create_user(0, PROFILE, TS)
    a.create_user(1, PROFILE, TS)
    b.create_user(1, PROFILE, TS)
    b.create_user(0, PROFILE, TS)
    for x, order in ((a, (0, 1)), (b, (1, 0))):
        for uid in order:
            api_key, _, sealed = material(uid)
            x.create_api_key(uid, api_key, sealed, "read", TS, ip_allow=["10.0.0.2", "10.0.0.1"])
    assert a.snapshot() == b.snapshot() and a.state_hash() == b.state_hash()
    assert views(a) == views(b)


def test_restore_rejects_bad_snapshots(acc):
    busy(acc)
    snap = acc.snapshot()
    with pytest.raises(ValueError, match="unreadable"):
        Accounts.restore(b"\x00garbage", MASTER)
    with pytest.raises(ValueError, match="format"):
        Accounts.restore(b'{"format":"other"}', MASTER)
    with pytest.raises(AccountError) as e:
        Accounts.restore(snap, OTHER_MASTER)
    assert e.value.field == "master_key"
    with pytest.raises(AccountError) as e:
        Accounts.restore(snap.replace(b"alice@example.com", b"alice@example"), MASTER)
    assert e.value.field == "email"
    with pytest.raises(ValueError, match="malformed"):
        Accounts.restore(snap.replace(b'"users":[[', b'"users":[[1,'), MASTER)


def test_state_hash_is_the_same_in_other_processes(acc):
    """No hash-order dependence: fresh interpreters with other hash seeds agree."""
    busy(acc)
    code = ("import sys; sys.path.insert(0, 'tests'); from tests.test_accounts import busy, Accounts, MASTER, "
            "PROFILE, TS; a = Accounts(MASTER); a.create_user(0, PROFILE, TS); "
            "a.create_user(1, {'display_name': 'Bob', 'email': 'bob@example.org', 'country': 'us'}, TS + 1); "
            "print(busy(a).state_hash())")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for seed in ("1", "12345"):
        out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, check=True)
        assert out.stdout.strip() == acc.state_hash()


# -- random command sequences ------------------------------------------------------------

USERS = [0, 1, 2, 9]
MARKETS = ["BTC-USD", "ETH-USD"]
PRICES = ["1", "2", "2.5", "3", "10"]

commands = st.one_of(
    st.tuples(st.just("create_user"), st.sampled_from(USERS),
              st.sampled_from([PROFILE, {**PROFILE, "country": "JP", "display_name": "Ken"},
                               {**PROFILE, "email": "bad"}])),
    st.tuples(st.just("update_profile"), st.sampled_from(USERS),
              st.sampled_from([{"display_name": "Z"}, {"country": "BR"}, {"email": "z@z.io"}, {"country": "ZZ"}])),
    st.tuples(st.just("set_kyc"), st.sampled_from(USERS), st.sampled_from(["none", "pending", "verified"]),
              st.integers(0, 3)),
    st.tuples(st.just("set_status"), st.sampled_from(USERS), st.sampled_from(["active", "suspended"])),
    st.tuples(st.just("create_api_key"), st.sampled_from(USERS), st.integers(0, 2),
              st.sampled_from(["read", "read,trade", "withdraw"]),
              st.sampled_from([None, ["10.0.0.0/8"], ["::1", "1.2.3.4"]])),
    st.tuples(st.just("update_api_key"), st.sampled_from(USERS), st.integers(0, 2),
              st.sampled_from(["read", "trade,withdraw"]), st.sampled_from([None, ["10.1.0.0/16"]])),
    st.tuples(st.just("revoke_api_key"), st.sampled_from(USERS), st.integers(0, 2)),
    st.tuples(st.just("add_price_alert"), st.sampled_from(USERS), st.sampled_from(MARKETS),
              st.sampled_from(["above", "below"]), st.sampled_from(PRICES)),
    st.tuples(st.just("cancel_price_alert"), st.sampled_from(USERS), st.integers(1, 8)),
    st.tuples(st.just("on_price"), st.sampled_from(MARKETS), st.sampled_from(PRICES)),
    st.tuples(st.just("notify"), st.sampled_from(USERS), st.sampled_from(["fill", "order_cancelled"]),
              st.sampled_from([{}, {"order_id": 1, "reason": "stp"}, {"x": 1.5}])),
    st.tuples(st.just("mark_read"), st.sampled_from(USERS), st.sampled_from([None, [1, 2, 3], [5]])),
)


def apply(acc: Accounts, cmd: tuple, ts: int):
    name, *args = cmd
    try:
        if name == "create_api_key":
            uid, n, perms, ips = args
            api_key, _, sealed = material(uid, n)
            return acc.create_api_key(uid, api_key, sealed, perms, ts, ip_allow=ips).events
        if name == "update_api_key":
            uid, n, perms, ips = args
            return acc.update_api_key(uid, material(uid, n)[0], ts, permissions=perms, ip_allow=ips)
        if name == "revoke_api_key":
            uid, n = args
            return acc.revoke_api_key(uid, material(uid, n)[0], ts)
        return getattr(acc, name)(*args, ts)
    except AccountError as e:
        return ("rejected", e.field)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commands, max_size=40), st.lists(commands, max_size=8))
def test_random_commands_roundtrip_through_snapshots(cmds, tail):
    acc = Accounts(MASTER, max_notifications=3)
    for i, cmd in enumerate(cmds):
        before = acc.snapshot()
        result = apply(acc, cmd, TS + i)
        if isinstance(result, tuple):  # rejected: nothing changed
            assert acc.snapshot() == before, cmd
    snap = acc.snapshot()
    again = Accounts.restore(snap, MASTER)
    assert again == acc and views(again) == views(acc)
    # the restored state goes on exactly as the original
    for j, cmd in enumerate(tail):
        assert apply(acc, cmd, TS + 1000 + j) == apply(again, cmd, TS + 1000 + j), cmd
    assert acc.snapshot() == again.snapshot()
