"""`Accounts`: users, API keys and notifications — the user side of the
exchange state machine, in pure Python, outside the per-order hot path.

Like the rest of the state machine (DESIGN §1) it is deterministic: every
change is a command (a method taking the sequencer's ``ts`` in ms), every
command returns a list of event dicts for the node to journal and publish,
bad input raises :class:`AccountError` naming the field and changes nothing,
there is no randomness, no wall-clock read and no output in hash order.
Balances live in the Rust ledger; a user's ``user_id`` is its ledger account
id (``Exchange.create_account()``).

API key secrets. Requests are signed as on Binance: the client sends its API
key and ``HMAC-SHA256(secret, payload)`` in hex. HMAC needs the secret on the
server, so it is stored encrypted: AES-256-GCM under the node master key
(shared by the nodes of a cluster, never in a snapshot), bound to the user
and the API key by the associated data. The random parts (the API key, the
secret, the GCM nonce) come from :func:`generate_key_material`, which a
*gateway* calls outside the state machine; the ``create_api_key`` command
carries only the API key and the sealed secret (nonce ‖ ciphertext), so
neither the journal nor the state ever holds a plaintext secret. The command
opens the sealed secret (which checks it) and returns the plaintext once, for
the response to the client; no query returns it again.

>>> master = bytes(range(32))               # the node master key (32 bytes)
>>> acc = Accounts(master)
>>> acc.create_user(0, {"display_name": "Alice", "email": "alice@example.com",
...                     "country": "DE"}, ts=1_700_000_000_000)[0]["type"]
'user_created'
>>> km = generate_key_material(master, user_id=0)   # gateway side: random
>>> created = acc.create_api_key(0, km.api_key, km.sealed_secret, "read,trade",
...                              ts=1_700_000_000_001, ip_allow=["10.0.0.0/8"])
>>> created.secret == km.secret                     # shown to the client once
True
>>> sig = sign_request(km.secret, b"symbol=BTC-USD&side=buy&timestamp=1")
>>> acc.verify_request(km.api_key, b"symbol=BTC-USD&side=buy&timestamp=1", sig,
...                    ip="10.1.2.3", required_permission="trade")
0
>>> acc.verify_request(km.api_key, b"x", sig, ip="10.1.2.3", required_permission="trade")
Traceback (most recent call last):
...
lxdex.accounts.AuthError: signature: does not match the request
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from array import array
from bisect import bisect_left, bisect_right, insort
from collections import deque
from decimal import Context, Decimal, InvalidOperation
from enum import IntEnum, IntFlag, StrEnum
from collections.abc import Iterable
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "Accounts",
    "AccountError",
    "AuthError",
    "AuthFailure",
    "KycStatus",
    "UserStatus",
    "Permission",
    "KeyMaterial",
    "ApiKeyCreated",
    "NOTIFICATION_KINDS",
    "generate_key_material",
    "seal_secret",
    "sign_request",
]

# -- vocabulary ---------------------------------------------------------------


class AccountError(ValueError):
    """A user/API-key/notification command or query was rejected; nothing
    changed. ``field`` names the offending argument or profile field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class AuthFailure(StrEnum):
    UNKNOWN_KEY = "unknown_key"
    REVOKED = "revoked"
    IP_NOT_ALLOWED = "ip_not_allowed"
    BAD_SIGNATURE = "bad_signature"
    PERMISSION_DENIED = "permission_denied"


class AuthError(AccountError):
    """:meth:`Accounts.verify_request` refused a request; ``reason`` is an
    :class:`AuthFailure` (gateways map unknown_key/revoked/bad_signature to
    401 and ip_not_allowed/permission_denied to 403)."""

    def __init__(self, field: str, message: str, reason: AuthFailure) -> None:
        super().__init__(field, message)
        self.reason = reason


class KycStatus(IntEnum):
    NONE = 0
    PENDING = 1
    VERIFIED = 2
    REJECTED = 3


class UserStatus(IntEnum):
    ACTIVE = 0
    SUSPENDED = 1


class Permission(IntFlag):
    READ = 1
    TRADE = 2
    WITHDRAW = 4


#: Notification kinds. System cancels (expiry, STP, liquidation, market
#: closed) are ``order_cancelled`` with the reason in the payload.
NOTIFICATION_KINDS = (
    "fill",
    "order_cancelled",
    "liquidation",
    "price_alert",
    "deposit",
    "withdrawal",
    "security",
    "system",
)

MAX_USER_ID = 2**32 - 1  # the Rust ledger's account ids are u32
MAX_ID_GAP = 2**20  # a new user id may be at most this far above the highest so far
MAX_TS = 2**63 - 1
MAX_NAME = 64
MAX_LABEL = 64
MAX_ACTIVE_KEYS = 30  # per user (Binance's limit)
MAX_IP_ALLOW = 30  # entries per key
MAX_ALERTS = 100  # active price alerts per user
MAX_PAYLOAD_ITEMS = 32
MAX_PAYLOAD_STR = 256
SECRET_BYTES = 32  # the secret is shown as 64 hex chars; HMAC keys on those chars
NONCE_BYTES = 12
SEALED_BYTES = NONCE_BYTES + SECRET_BYTES + 16  # nonce ‖ ciphertext ‖ GCM tag
_AAD = b"lxdex/api-key-secret/v1\x00"
_SNAPSHOT_FORMAT = "lxdex.accounts"
_SNAPSHOT_VERSION = 1

# ISO 3166-1 alpha-2, the 249 officially assigned codes.
_COUNTRIES = tuple(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ
    BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU
    CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB
    GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL
    IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI
    LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
    MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN
    PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR
    SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US
    UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW""".split()
)
_COUNTRY_INDEX = {c: i for i, c in enumerate(_COUNTRIES)}
assert len(_COUNTRIES) == 249 and len(_COUNTRIES) < 256

_PROFILE_FIELDS = ("display_name", "email", "country")
_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59}))",
    re.ASCII,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_API_KEY = re.compile(r"[A-Za-z0-9]{16,64}", re.ASCII)
_MARKET = re.compile(r"[A-Z0-9]{1,12}-[A-Z0-9]{1,12}", re.ASCII)
_PAYLOAD_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)
_HEX64 = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_DEC_CTX = Context(prec=80)  # exact for every price we accept (≤ 36 digits)
_MAX_PRICE = Decimal(10) ** 18
_CONDITIONS = ("above", "below")
_UNSET: Any = object()

# -- gateway helpers (outside the state machine) -----------------------------


class KeyMaterial(NamedTuple):
    """What a gateway generates for a new API key. ``api_key`` and
    ``sealed_secret`` go into the ``create_api_key`` command; ``secret`` must
    never be journaled."""

    api_key: str
    secret: str
    sealed_secret: bytes


def seal_secret(master_key: bytes, user_id: int, api_key: str, secret: str, nonce: bytes) -> bytes:
    """``nonce ‖ AES-256-GCM(master_key, nonce, secret, aad=user_id+api_key)``.

    Deterministic given its arguments; ``secret`` is the 64-hex-char secret.
    A nonce must never be used twice under one master key: use
    :func:`generate_key_material`, which draws a fresh random one.
    """
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise AccountError("nonce", f"must be {NONCE_BYTES} bytes")
    if not isinstance(secret, str) or not _HEX64.fullmatch(secret):
        raise AccountError("secret", "must be 64 hex characters")
    return nonce + _aead(master_key).encrypt(nonce, bytes.fromhex(secret), _aad(user_id, api_key))


def generate_key_material(master_key: bytes, user_id: int) -> KeyMaterial:
    """A new API key (64 alphanumeric chars, as Binance's), its secret (32
    random bytes as 64 hex chars) and the sealed secret.

    **Not part of the state machine**: it reads the OS random source
    (``secrets``). A gateway calls it, puts ``api_key`` and ``sealed_secret``
    into the ``create_api_key`` command, and forgets ``secret``.
    """
    n = secrets.randbelow(62**64)  # uniform over the 64-char alphanumeric keys
    digits = []
    for _ in range(64):
        n, d = divmod(n, 62)
        digits.append(_KEY_ALPHABET[d])
    api_key = "".join(digits)
    secret = secrets.token_hex(SECRET_BYTES)
    nonce = secrets.token_bytes(NONCE_BYTES)
    return KeyMaterial(api_key, secret, seal_secret(master_key, user_id, api_key, secret, nonce))


def sign_request(secret: str, payload: bytes | str) -> str:
    """The client side: ``HMAC-SHA256(secret, payload)`` in lowercase hex,
    the key being the secret's characters (as Binance clients do). The payload
    is the query string followed by the body, exactly as sent."""
    if isinstance(payload, str):
        payload = payload.encode()
    return hmac.digest(secret.encode(), payload, "sha256").hex()


class ApiKeyCreated(NamedTuple):
    """The result of ``create_api_key``: the plaintext ``secret`` (shown to
    the client once; not in any event, snapshot or query) and the events."""

    secret: str
    events: list


# -- validation ---------------------------------------------------------------


def _aead(master_key: bytes) -> AESGCM:
    if not isinstance(master_key, bytes) or len(master_key) != 32:
        raise AccountError("master_key", "must be 32 bytes (AES-256)")
    return AESGCM(master_key)


def _aad(user_id: int, api_key: str) -> bytes:
    return _AAD + user_id.to_bytes(4, "little") + api_key.encode()


def _int(value: Any, field: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise AccountError(field, f"must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise AccountError(field, f"{value} is out of range {lo}..{hi}")
    return int(value)


def _user_id(value: Any, field: str = "user_id") -> int:
    return _int(value, field, 0, MAX_USER_ID)


def _ts(value: Any) -> int:
    return _int(value, "ts", 0, MAX_TS)


def _text(value: Any, field: str, max_len: int, *, empty: bool) -> str:
    if not isinstance(value, str):
        raise AccountError(field, f"must be a string, not {type(value).__name__}")
    if not value and not empty:
        raise AccountError(field, "must not be empty")
    if len(value) > max_len:
        raise AccountError(field, f"is {len(value)} characters long, at most {max_len} allowed")
    if _CONTROL.search(value):
        raise AccountError(field, "contains a control character")
    if value != value.strip():
        raise AccountError(field, "has leading or trailing whitespace")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise AccountError(field, "is not valid Unicode (lone surrogate)") from None
    return value


def _display_name(value: Any) -> str:
    return _text(value, "display_name", MAX_NAME, empty=False)


def _email(value: Any) -> str:
    if not isinstance(value, str):
        raise AccountError("email", f"must be a string, not {type(value).__name__}")
    m = _EMAIL.fullmatch(value)
    if m is None or len(value) > 254 or len(m["local"]) > 64:
        raise AccountError("email", f"{value!r} is not an email address")
    return f"{m['local']}@{m['domain'].lower()}"


def _country(value: Any) -> int:
    if not isinstance(value, str):
        raise AccountError("country", f"must be a string, not {type(value).__name__}")
    i = _COUNTRY_INDEX.get(value.upper()) if value.isascii() else None
    if i is None:
        raise AccountError("country", f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return i


def _enum(cls: type[IntEnum], value: Any, field: str) -> int:
    if isinstance(value, str):
        try:
            return int(cls[value.upper()])
        except KeyError:
            pass
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            return int(cls(value))
        except ValueError:
            pass
    names = ", ".join(m.name.lower() for m in cls)
    raise AccountError(field, f"{value!r} is not one of {names}")


_PERM_BITS = {"read": 1, "trade": 2, "withdraw": 4}
_WITHDRAW = 4
_PERM_NAMES = tuple([n for n, b in _PERM_BITS.items() if bits & b] for bits in range(8))


def _permissions(value: Any, field: str = "permissions") -> int:
    """A Permission, its int, a name ("trade"), a comma list ("read,trade")
    or an iterable of names; at least one permission."""
    if isinstance(value, str) and value in _PERM_BITS:  # the common case: one name
        return _PERM_BITS[value]
    if isinstance(value, bool):
        raise AccountError(field, "must be permission names or flags, not a bool")
    if isinstance(value, int):
        bits = int(value)
    else:
        names = value.split(",") if isinstance(value, str) else value
        bits = 0
        try:
            items = list(names)
        except TypeError:
            raise AccountError(field, f"must be permission names or flags, not {type(value).__name__}") from None
        for name in items:
            if isinstance(name, Permission):
                bits |= int(name)
                continue
            b = _PERM_BITS.get(name.strip().lower()) if isinstance(name, str) else None
            if b is None:
                raise AccountError(field, f"{name!r} is not one of read, trade, withdraw")
            bits |= b
    if not 1 <= bits <= 7:
        raise AccountError(field, "must name at least one of read, trade, withdraw")
    return bits


def _permission_names(bits: int) -> list[str]:
    return list(_PERM_NAMES[bits])


def _ip_allow(value: Any) -> tuple | None:
    """Canonical allow-list: unique networks, sorted by (version, address,
    prefix); None when there is no restriction."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise AccountError("ip_allow", "must be a list of addresses or networks, not one string")
    try:
        items = list(value)
    except TypeError:
        raise AccountError("ip_allow", f"must be a list, not {type(value).__name__}") from None
    if len(items) > MAX_IP_ALLOW:
        raise AccountError("ip_allow", f"has {len(items)} entries, at most {MAX_IP_ALLOW} allowed")
    nets = {}
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise AccountError(f"ip_allow[{i}]", f"must be a string, not {type(item).__name__}")
        try:
            net = ipaddress.ip_network(item, strict=True)
        except ValueError as e:
            raise AccountError(f"ip_allow[{i}]", f"{item!r} is not an IP address or network ({e})") from None
        nets[(net.version, int(net.network_address), net.prefixlen)] = net
    if not nets:
        return None
    return tuple(nets[k] for k in sorted(nets))


def _decimal_price(value: Any, field: str) -> Decimal:
    if isinstance(value, (float, bool)) or not isinstance(value, (str, int, Decimal)):
        raise AccountError(field, f"pass a decimal string, not {type(value).__name__} ({value!r})")
    try:
        d = Decimal(value)
    except (InvalidOperation, ValueError):
        raise AccountError(field, f"{value!r} is not a decimal number") from None
    if not d.is_finite() or d <= 0:
        raise AccountError(field, f"{value!r} must be a positive finite number")
    if d >= _MAX_PRICE:
        raise AccountError(field, f"{value!r} must be below 1e18")
    d = d.normalize(_DEC_CTX)
    if d.as_tuple().exponent < -18:
        raise AccountError(field, f"{value!r} has more than 18 decimal places")
    return d


def _dec_str(d: Decimal) -> str:
    return format(d, "f")


def _market(value: Any) -> str:
    if not isinstance(value, str) or not _MARKET.fullmatch(value):
        raise AccountError("market", f"{value!r} is not a market symbol like BTC-USD")
    return value


def _payload(value: Any) -> str:
    """The payload as canonical JSON: a flat dict of str keys to str, int,
    bool or None (no floats: the state machine is integers only)."""
    if not isinstance(value, dict):
        raise AccountError("payload", f"must be a dict, not {type(value).__name__}")
    if len(value) > MAX_PAYLOAD_ITEMS:
        raise AccountError("payload", f"has {len(value)} items, at most {MAX_PAYLOAD_ITEMS} allowed")
    for k in value:
        if not isinstance(k, str) or not _PAYLOAD_KEY.fullmatch(k):
            raise AccountError("payload", f"key {k!r} is not a lowercase identifier of at most 32 chars")
    for k in sorted(value):
        v = value[k]
        f = f"payload.{k}"
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, int):
            _int(v, f, -(2**63), 2**63 - 1)
        elif isinstance(v, str):
            if len(v) > MAX_PAYLOAD_STR:
                raise AccountError(f, f"is {len(v)} characters long, at most {MAX_PAYLOAD_STR} allowed")
            try:
                v.encode()
            except UnicodeEncodeError:
                raise AccountError(f, "is not valid Unicode (lone surrogate)") from None
        else:
            raise AccountError(f, f"must be a str, int, bool or None, not {type(v).__name__}")
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# -- the state ------------------------------------------------------------------


class _KeyTable:
    """API key strings in a fixed-width arena (64 bytes each, NUL-padded)
    with an open-addressing index of key slots: ~72 bytes a key, where a
    dict of str → int costs ~200 (str object, dict entry, int object). Keys are never removed (revoked keys stay), so there are
    no tombstones. The index is probed by Python's ``hash`` of the padded
    key, which varies per process: that is fine because the table is only
    ever probed, never iterated — nothing observable depends on its layout.
    """

    WIDTH = 64

    def __init__(self) -> None:
        self._arena = bytearray()
        self._table = array("i", [-1]) * 16
        self._mask = 15
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def key(self, slot: int) -> str:
        w = self.WIDTH
        return self._arena[slot * w : (slot + 1) * w].rstrip(b"\x00").decode()

    def _probe(self, padded: bytes) -> tuple[int, int]:
        """(slot or -1, table position where it is or would go)."""
        table, mask, arena, w = self._table, self._mask, self._arena, self.WIDTH
        i = hash(padded) & mask
        while True:
            slot = table[i]
            if slot < 0 or arena[slot * w : (slot + 1) * w] == padded:
                return slot, i
            i = (i + 1) & mask

    def find(self, api_key: object) -> int | None:
        if not isinstance(api_key, str) or not _API_KEY.fullmatch(api_key):
            return None
        slot, _ = self._probe(api_key.encode().ljust(self.WIDTH, b"\x00"))
        return None if slot < 0 else slot

    def add(self, api_key: str) -> int:
        """Append a key that ``find`` does not know (the caller checked)."""
        padded = api_key.encode().ljust(self.WIDTH, b"\x00")
        slot = self._n
        self._arena += padded
        self._n += 1
        if 2 * self._n > len(self._table):  # keep the load at most 1/2
            self._table = array("i", [-1]) * (2 * len(self._table))
            self._mask = len(self._table) - 1
            w = self.WIDTH
            for k in range(self._n):
                _, i = self._probe(bytes(self._arena[k * w : (k + 1) * w]))
                self._table[i] = k
        else:
            _, i = self._probe(padded)
            self._table[i] = slot
        return slot


# Per-user byte: bits 0-1 KYC status, bits 2-3 KYC level, bit 4 suspended,
# bit 7: no user has this id (a hole in the dense id range).
_KYC_MASK, _LEVEL_SHIFT, _SUSPENDED, _HOLE = 0x03, 2, 0x10, 0x80


class _TextArena:
    """One short string per slot, UTF-8 with a 2-byte length prefix, in one
    bytearray (~10 bytes of overhead a string instead of ~41 for a ``bytes``
    in a list). A rewrite appends and leaves the old record as garbage; the
    arena is compacted when garbage passes half of it."""

    def __init__(self) -> None:
        self._arena = bytearray()
        self._off = array("Q")
        self._garbage = 0

    def get(self, slot: int) -> str:
        o = self._off[slot]
        n = self._arena[o] | (self._arena[o + 1] << 8)
        return self._arena[o + 2 : o + 2 + n].decode()

    def pad(self, n: int) -> None:
        """Append ``n`` empty strings."""
        start = len(self._arena)
        self._off.extend(range(start, start + 2 * n, 2))
        self._arena += bytes(2 * n)

    def put(self, slot: int, text: str) -> None:
        data = text.encode()
        assert len(data) < 65536
        if slot == len(self._off):
            self._off.append(len(self._arena))
        else:
            o = self._off[slot]
            self._garbage += 2 + (self._arena[o] | (self._arena[o + 1] << 8))
            self._off[slot] = len(self._arena)
        self._arena += len(data).to_bytes(2, "little") + data
        if self._garbage > 4096 and 2 * self._garbage > len(self._arena):
            self._compact()

    def _compact(self) -> None:
        old, new = self._arena, bytearray()
        for slot, o in enumerate(self._off):
            n = 2 + (old[o] | (old[o + 1] << 8))
            self._off[slot] = len(new)
            new += old[o : o + n]
        self._arena, self._garbage = new, 0


class Accounts:
    """Users, API keys, price alerts and notifications.

    Storage is columnar. Users live in per-field arrays indexed by user id
    (the ledger's account ids are dense; an id without a user is a hole of
    ~30 bytes, and a new id may be at most ``MAX_ID_GAP`` above the highest),
    the KYC status, level and account status packed in one byte, the country
    as a byte, display name and email in one UTF-8 arena. API keys live in
    per-field arrays indexed by key slot: the key strings in a fixed-width
    arena with an open-addressing index, the sealed secrets in one
    fixed-width bytearray, a user's keys chained through ``_knext``.
    """

    def __init__(self, master_key: bytes, *, max_notifications: int = 100) -> None:
        self._aead = _aead(master_key)
        self.max_notifications = _int(max_notifications, "max_notifications", 1, 10_000)
        # users, by slot
        self._nusers = 0
        self._created = array("q")
        self._ustate = bytearray()
        self._country = bytearray()
        self._texts = _TextArena()  # display_name \0 email, UTF-8, by slot
        self._first_key = array("i")  # newest key slot of the user, -1 if none
        self._nactive = bytearray()  # active API keys of the user
        # API keys, by key slot
        self._keys = _KeyTable()
        self._kuser = array("I")
        self._kcreated = array("q")
        self._krevoked = array("q")  # ts of revocation, -1 while active
        self._kperm = bytearray()
        self._ksealed = bytearray()  # SEALED_BYTES per key; zeroed on revoke
        self._klabel: list[str] = []
        self._kips: list[tuple | None] = []
        self._knext = array("i")  # the user's previous key slot, -1 at the end
        # price alerts
        self._next_alert_id = 1
        self._alerts: dict[int, tuple[int, str, int, Decimal, int]] = {}  # id -> user, market, cond, price, created
        self._alert_index: dict[str, tuple[list, list]] = {}  # market -> ([(price, id)] above, [(price, id)] below)
        self._alert_count: dict[int, int] = {}
        # notifications: user_id -> deque of (id, ts, kind, payload_json, read)
        self._next_notification_id = 1
        self._inbox: dict[int, deque] = {}

    # -- users ------------------------------------------------------------------
    def __len__(self) -> int:
        return self._nusers

    def __contains__(self, user_id: object) -> bool:
        return isinstance(user_id, int) and self._find(user_id) is not None

    def _find(self, user_id: int) -> int | None:
        if 0 <= user_id < len(self._ustate) and not self._ustate[user_id] & _HOLE:
            return user_id
        return None

    def _slot(self, user_id: Any, field: str = "user_id") -> int:
        slot = self._find(_user_id(user_id, field))
        if slot is None:
            raise AccountError(field, f"no user {user_id}")
        return slot

    def create_user(self, user_id: int, profile: dict, ts: int) -> list[dict]:
        """A new user: ``profile`` has ``display_name``, ``email`` and
        ``country``; ``created_at`` is ``ts``. KYC starts at none/level 0,
        the status at active."""
        uid = _user_id(user_id)
        if self._find(uid) is not None:
            raise AccountError("user_id", f"user {uid} already exists")
        if uid >= len(self._ustate) + MAX_ID_GAP:
            raise AccountError("user_id", f"{uid} is more than {MAX_ID_GAP} above the highest user id "
                               f"({len(self._ustate) - 1}); user ids are the ledger's dense account ids")
        if not isinstance(profile, dict):
            raise AccountError("profile", f"must be a dict, not {type(profile).__name__}")
        self._check_profile_keys(profile, required=True)
        name = _display_name(profile["display_name"])
        email = _email(profile["email"])
        country = _country(profile["country"])
        ts = _ts(ts)
        self._insert_user(uid, name, email, country, ts, 0)
        return [{"type": "user_created", "user_id": uid, "display_name": name, "email": email,
                 "country": _COUNTRIES[country], "created_at": ts, "kyc_status": "none",
                 "kyc_level": 0, "status": "active", "ts": ts}]

    @staticmethod
    def _check_profile_keys(profile: dict, *, required: bool) -> None:
        for k in profile:
            if k not in _PROFILE_FIELDS:
                if k == "created_at":
                    raise AccountError("created_at", "is set from the command's ts")
                raise AccountError(f"profile.{k}" if isinstance(k, str) else "profile",
                                   f"unknown field; the fields are {', '.join(_PROFILE_FIELDS)}")
        if required:
            for k in _PROFILE_FIELDS:
                if k not in profile:
                    raise AccountError(k, "is required")

    def _insert_user(self, uid: int, name: str, email: str, country: int, created: int, state: int) -> None:
        """Store a user at slot ``uid``; ids skipped so far become holes
        (ledger accounts without a user, or users still to come)."""
        gap = uid + 1 - len(self._ustate)
        if gap > 0:
            self._created.extend(array("q", bytes(8 * gap)))
            self._ustate += bytes([_HOLE]) * gap
            self._country += bytes(gap)
            self._texts.pad(gap)
            self._first_key.extend(array("i", [-1]) * gap)
            self._nactive += bytes(gap)
        self._created[uid] = created
        self._ustate[uid] = state
        self._country[uid] = country
        self._texts.put(uid, f"{name}\x00{email}")
        self._nusers += 1

    def update_profile(self, user_id: int, changes: dict, ts: int) -> list[dict]:
        """Change some of ``display_name``, ``email``, ``country``. The event
        lists only the fields whose value changed (none changed: no event)."""
        slot = self._slot(user_id)
        if not isinstance(changes, dict):
            raise AccountError("changes", f"must be a dict, not {type(changes).__name__}")
        if not changes:
            raise AccountError("changes", "must name at least one field")
        self._check_profile_keys(changes, required=False)
        name, email = self._texts.get(slot).split("\x00")
        country = self._country[slot]
        new_name = _display_name(changes["display_name"]) if "display_name" in changes else name
        new_email = _email(changes["email"]) if "email" in changes else email
        new_country = _country(changes["country"]) if "country" in changes else country
        ts = _ts(ts)
        diff = {}
        if new_name != name:
            diff["display_name"] = new_name
        if new_email != email:
            diff["email"] = new_email
        if new_country != country:
            diff["country"] = _COUNTRIES[new_country]
        if not diff:
            return []
        self._texts.put(slot, f"{new_name}\x00{new_email}")
        self._country[slot] = new_country
        return [{"type": "user_updated", "user_id": user_id, "changes": diff, "ts": ts}]

    def set_kyc(self, user_id: int, status: KycStatus | str | int, level: int, ts: int) -> list[dict]:
        """Set the KYC status and level (0..3). Status ``none`` requires level
        0 and ``verified`` a level of at least 1; ``pending``/``rejected``
        keep whatever level was reached (an upgrade in review or refused)."""
        slot = self._slot(user_id)
        st = _enum(KycStatus, status, "status")
        lvl = _int(level, "level", 0, 3)
        if st == KycStatus.NONE and lvl != 0:
            raise AccountError("level", "must be 0 while the KYC status is none")
        if st == KycStatus.VERIFIED and lvl == 0:
            raise AccountError("level", "must be at least 1 when the KYC status is verified")
        ts = _ts(ts)
        old = self._ustate[slot]
        new = (old & ~0x0F) | st | (lvl << _LEVEL_SHIFT)
        if new == old:
            return []
        self._ustate[slot] = new
        return [{"type": "kyc_changed", "user_id": user_id, "kyc_status": KycStatus(st).name.lower(),
                 "kyc_level": lvl, "ts": ts}]

    def set_status(self, user_id: int, status: UserStatus | str | int, ts: int) -> list[dict]:
        """Active or suspended. The node mirrors the event into the ledger
        (``Exchange.suspend``): a suspended account cannot place or amend
        orders, and cannot create API keys. Setting the current status is a
        no-op (no event)."""
        slot = self._slot(user_id)
        st = _enum(UserStatus, status, "status")
        ts = _ts(ts)
        old = self._ustate[slot]
        new = (old | _SUSPENDED) if st == UserStatus.SUSPENDED else (old & ~_SUSPENDED)
        if new == old:
            return []
        self._ustate[slot] = new
        return [{"type": "user_status_changed", "user_id": user_id,
                 "status": UserStatus(st).name.lower(), "ts": ts}]

    def user(self, user_id: int) -> dict:
        """The user's profile, KYC and status (never any key secret)."""
        slot = self._slot(user_id)
        name, email = self._texts.get(slot).split("\x00")
        s = self._ustate[slot]
        return {"user_id": slot, "display_name": name, "email": email,
                "country": _COUNTRIES[self._country[slot]], "created_at": self._created[slot],
                "kyc_status": KycStatus(s & _KYC_MASK).name.lower(), "kyc_level": (s >> _LEVEL_SHIFT) & 3,
                "status": "suspended" if s & _SUSPENDED else "active"}

    def user_ids(self) -> list[int]:
        """Every user id, ascending."""
        return [i for i, s in enumerate(self._ustate) if not s & _HOLE]

    # -- API keys -----------------------------------------------------------------
    def create_api_key(
        self,
        user_id: int,
        api_key: str,
        sealed_secret: bytes,
        permissions: Permission | str | int | Iterable[str],
        ts: int,
        *,
        ip_allow: Iterable[str] | None = None,
        label: str = "",
    ) -> ApiKeyCreated:
        """Register an API key made by :func:`generate_key_material`.

        ``sealed_secret`` must open under this node's master key for this
        user and ``api_key``. The withdraw permission requires an IP
        allow-list (as on Binance). Returns the plaintext secret once and the
        events; the ``api_key_created`` event carries no secret.
        """
        slot = self._slot(user_id)
        if self._ustate[slot] & _SUSPENDED:
            raise AccountError("user_id", f"user {user_id} is suspended")
        if not isinstance(api_key, str) or not _API_KEY.fullmatch(api_key):
            raise AccountError("api_key", "must be 16 to 64 letters and digits")
        if self._keys.find(api_key) is not None:
            raise AccountError("api_key", "already exists")
        if not isinstance(sealed_secret, bytes) or len(sealed_secret) != SEALED_BYTES:
            raise AccountError("sealed_secret", f"must be {SEALED_BYTES} bytes: a {NONCE_BYTES}-byte nonce and "
                               f"the AES-256-GCM ciphertext of a {SECRET_BYTES}-byte secret")
        perm = _permissions(permissions)
        ips = _ip_allow(ip_allow)
        if perm & _WITHDRAW and ips is None:
            raise AccountError("ip_allow", "is required for a key with the withdraw permission")
        lbl = _text(label, "label", MAX_LABEL, empty=True)
        ts = _ts(ts)
        if self._nactive[slot] >= MAX_ACTIVE_KEYS:
            raise AccountError("api_key", f"user {user_id} already has {MAX_ACTIVE_KEYS} active API keys")
        secret = self._open(user_id, api_key, sealed_secret)
        if secret is None:
            raise AccountError("sealed_secret", "does not open under this node's master key for this user and api_key")
        k = self._keys.add(api_key)
        self._kuser.append(user_id)
        self._kcreated.append(ts)
        self._krevoked.append(-1)
        self._kperm.append(perm)
        self._ksealed += sealed_secret
        self._klabel.append(lbl or "")
        self._kips.append(ips)
        self._knext.append(self._first_key[slot])
        self._first_key[slot] = k
        self._nactive[slot] += 1
        event = {"type": "api_key_created", **self._key_info(k), "ts": ts}
        return ApiKeyCreated(secret.hex(), [event])

    def _open(self, user_id: int, api_key: str, sealed: bytes) -> bytes | None:
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _aad(user_id, api_key))
        except InvalidTag:
            return None

    def _own_key(self, user_id: Any, api_key: Any) -> int:
        self._slot(user_id)
        k = self._keys.find(api_key)
        if k is None or self._kuser[k] != user_id:
            raise AccountError("api_key", f"user {user_id} has no API key {api_key!r}")
        return k

    def update_api_key(
        self,
        user_id: int,
        api_key: str,
        ts: int,
        *,
        permissions: Any = _UNSET,
        ip_allow: Any = _UNSET,
        label: Any = _UNSET,
    ) -> list[dict]:
        """Change an active key's permissions, IP allow-list (None: no
        restriction) or label. The event lists only what changed."""
        k = self._own_key(user_id, api_key)
        if self._krevoked[k] >= 0:
            raise AccountError("api_key", "is revoked")
        perm = self._kperm[k] if permissions is _UNSET else _permissions(permissions)
        ips = self._kips[k] if ip_allow is _UNSET else _ip_allow(ip_allow)
        lbl = self._klabel[k] if label is _UNSET else _text(label, "label", MAX_LABEL, empty=True)
        if perm & _WITHDRAW and ips is None:
            raise AccountError("ip_allow", "is required for a key with the withdraw permission")
        ts = _ts(ts)
        diff: dict[str, Any] = {}
        if perm != self._kperm[k]:
            diff["permissions"] = _permission_names(perm)
        if ips != self._kips[k]:
            diff["ip_allow"] = [str(n) for n in ips or ()]
        if lbl != self._klabel[k]:
            diff["label"] = lbl
        if not diff:
            return []
        self._kperm[k], self._kips[k], self._klabel[k] = perm, ips, lbl
        return [{"type": "api_key_updated", "user_id": user_id, "api_key": api_key, "changes": diff, "ts": ts}]

    def revoke_api_key(self, user_id: int, api_key: str, ts: int) -> list[dict]:
        """Revoke a key for good: requests with it fail as ``revoked`` and
        its sealed secret is erased. Revoking a revoked key is a no-op."""
        k = self._own_key(user_id, api_key)
        ts = _ts(ts)
        if self._krevoked[k] >= 0:
            return []
        self._krevoked[k] = ts
        self._ksealed[k * SEALED_BYTES : (k + 1) * SEALED_BYTES] = bytes(SEALED_BYTES)
        self._nactive[self._find(user_id)] -= 1
        return [{"type": "api_key_revoked", "user_id": user_id, "api_key": api_key, "ts": ts}]

    def _key_info(self, k: int) -> dict:
        revoked = self._krevoked[k]
        return {"user_id": self._kuser[k], "api_key": self._keys.key(k),
                "permissions": _permission_names(self._kperm[k]),
                "ip_allow": [str(n) for n in self._kips[k] or ()], "label": self._klabel[k],
                "created_at": self._kcreated[k], "revoked_at": None if revoked < 0 else revoked}

    def api_key(self, api_key: str) -> dict:
        """A key's user, permissions, allow-list, label and dates (no secret)."""
        k = self._keys.find(api_key)
        if k is None:
            raise AccountError("api_key", f"no API key {api_key!r}")
        return self._key_info(k)

    def api_keys(self, user_id: int, *, include_revoked: bool = False) -> list[dict]:
        """The user's keys, oldest first (by created_at, then api_key)."""
        k = self._first_key[self._slot(user_id)]
        out = []
        while k >= 0:
            if include_revoked or self._krevoked[k] < 0:
                out.append(self._key_info(k))
            k = self._knext[k]
        out.sort(key=lambda d: (d["created_at"], d["api_key"]))
        return out

    def verify_request(
        self,
        api_key: str,
        payload: bytes | str,
        signature_hex: str,
        ip: str | None,
        required_permission: Permission | str | int,
    ) -> int:
        """Authenticate a signed request and return its ``user_id``.

        Checks, in order: the key exists (``unknown_key``), is not revoked
        (``revoked``), the client ``ip`` is in the key's allow-list if it has
        one (``ip_not_allowed``), ``signature_hex`` equals
        HMAC-SHA256(secret, payload) (``bad_signature``, compared in constant
        time), and the key has ``required_permission`` (``permission_denied``).
        Raises :class:`AuthError`. A read-only query: it changes nothing, so a
        gateway may call it outside the log. Account status (suspension) is
        enforced by the exchange's commands, not here: a suspended user may
        still read and cancel.
        """
        required = _permissions(required_permission, "required_permission")
        k = self._keys.find(api_key)
        if k is None:
            raise AuthError("api_key", "unknown API key", AuthFailure.UNKNOWN_KEY)
        if self._krevoked[k] >= 0:
            raise AuthError("api_key", "the API key is revoked", AuthFailure.REVOKED)
        nets = self._kips[k]
        if nets is not None:
            self._check_ip(ip, nets)
        if isinstance(payload, str):
            payload = payload.encode()
        if not isinstance(payload, bytes):
            raise AuthError("payload", "must be bytes", AuthFailure.BAD_SIGNATURE)
        user_id = self._kuser[k]
        secret = self._open(user_id, api_key, bytes(self._ksealed[k * SEALED_BYTES : (k + 1) * SEALED_BYTES]))
        if secret is None:  # the node's master key is not the one that sealed it
            raise AuthError("api_key", "the key's secret does not open under this node's master key",
                            AuthFailure.BAD_SIGNATURE)
        expected = hmac.digest(secret.hex().encode(), payload, "sha256")
        try:
            given = bytes.fromhex(signature_hex) if len(signature_hex) == 64 else b""
        except (TypeError, ValueError):
            given = b""
        if not hmac.compare_digest(expected, given):
            raise AuthError("signature", "does not match the request", AuthFailure.BAD_SIGNATURE)
        missing = required & ~self._kperm[k]
        if missing:
            raise AuthError("required_permission", f"the API key lacks {', '.join(_permission_names(missing))}",
                            AuthFailure.PERMISSION_DENIED)
        return user_id

    @staticmethod
    def _check_ip(ip: str | None, nets: tuple) -> None:
        if ip is None:
            raise AuthError("ip", "the API key is restricted to an IP allow-list; no client IP given",
                            AuthFailure.IP_NOT_ALLOWED)
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise AuthError("ip", f"{ip!r} is not an IP address", AuthFailure.IP_NOT_ALLOWED) from None
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if not any(addr in n for n in nets):
            raise AuthError("ip", f"{ip} is not in the API key's IP allow-list", AuthFailure.IP_NOT_ALLOWED)

    # -- price alerts ---------------------------------------------------------------
    def add_price_alert(self, user_id: int, market: str, condition: str, price: str | Decimal, ts: int) -> list[dict]:
        """A one-shot alert: ``above`` fires on the first observed price ≥
        ``price``, ``below`` on the first ≤ ``price`` (also when the price is
        already there when the alert is made: it fires on the next
        observation). The event carries the new ``alert_id``."""
        slot = self._slot(user_id)
        uid = slot
        mkt = _market(market)
        if condition not in _CONDITIONS:
            raise AccountError("condition", f"{condition!r} is not one of above, below")
        p = _decimal_price(price, "price")
        ts = _ts(ts)
        if self._alert_count.get(uid, 0) >= MAX_ALERTS:
            raise AccountError("user_id", f"user {uid} already has {MAX_ALERTS} active price alerts")
        aid = self._next_alert_id
        self._next_alert_id += 1
        self._insert_alert(aid, uid, mkt, _CONDITIONS.index(condition), p, ts)
        return [{"type": "price_alert_created", "alert_id": aid, "user_id": uid, "market": mkt,
                 "condition": condition, "price": _dec_str(p), "ts": ts}]

    def _insert_alert(self, aid: int, uid: int, market: str, cond: int, price: Decimal, created: int) -> None:
        self._alerts[aid] = (uid, market, cond, price, created)
        insort(self._alert_index.setdefault(market, ([], []))[cond], (price, aid))
        self._alert_count[uid] = self._alert_count.get(uid, 0) + 1

    def _remove_alert(self, aid: int) -> None:
        uid, market, cond, price, _ = self._alerts.pop(aid)
        index = self._alert_index[market]
        side = index[cond]
        del side[bisect_left(side, (price, aid))]
        if not index[0] and not index[1]:
            del self._alert_index[market]
        n = self._alert_count[uid] - 1
        if n:
            self._alert_count[uid] = n
        else:
            del self._alert_count[uid]

    def cancel_price_alert(self, user_id: int, alert_id: int, ts: int) -> list[dict]:
        slot = self._slot(user_id)
        aid = _int(alert_id, "alert_id", 1, 2**63 - 1)
        ts = _ts(ts)
        alert = self._alerts.get(aid)
        if alert is None or alert[0] != slot:
            raise AccountError("alert_id", f"user {user_id} has no active price alert {aid}")
        self._remove_alert(aid)
        return [{"type": "price_alert_cancelled", "alert_id": aid, "user_id": user_id, "ts": ts}]

    def price_alerts(self, user_id: int) -> list[dict]:
        """The user's active alerts, by alert id."""
        uid = self._slot(user_id)
        if uid not in self._alert_count:
            return []
        return [{"alert_id": aid, "user_id": u, "market": m, "condition": _CONDITIONS[c], "price": _dec_str(p),
                 "created_at": t}
                for aid, (u, m, c, p, t) in sorted(self._alerts.items()) if u == uid]

    def has_alerts(self, market: str | None = None) -> bool:
        """Whether any price alert is set (on `market`, if given): when none
        is, `on_price` fires nothing and can be skipped."""
        return bool(self._alert_index) if market is None else market in self._alert_index

    def on_price(self, market: str, price: str | Decimal, ts: int) -> list[dict]:
        """An observed price of ``market``: every matching alert fires once,
        in alert id order, as a ``price_alert`` notification to its user."""
        mkt = _market(market)
        p = _decimal_price(price, "price")
        ts = _ts(ts)
        index = self._alert_index.get(mkt)
        if index is None:
            return []
        above, below = index
        fired = [aid for _, aid in above[: bisect_right(above, (p, 2**64))]]
        fired += [aid for _, aid in below[bisect_left(below, (p, 0)) :]]
        events = []
        for aid in sorted(fired):
            uid, _, cond, target, _ = self._alerts[aid]
            self._remove_alert(aid)
            payload = {"alert_id": aid, "market": mkt, "condition": _CONDITIONS[cond], "price": _dec_str(target),
                       "observed_price": _dec_str(p)}
            events.append(self._push(uid, "price_alert", _payload(payload), ts))
        return events

    # -- notifications ---------------------------------------------------------------
    def notify(self, user_id: int, kind: str, payload: dict, ts: int) -> list[dict]:
        """A system notification to a user (a fill, a system cancel with its
        reason in the payload, a liquidation, …). The user's inbox keeps the
        last ``max_notifications``; older ones drop off."""
        uid = self._slot(user_id)
        if kind not in NOTIFICATION_KINDS:
            raise AccountError("kind", f"{kind!r} is not one of {', '.join(NOTIFICATION_KINDS)}")
        body = _payload(payload)
        ts = _ts(ts)
        return [self._push(uid, NOTIFICATION_KINDS[NOTIFICATION_KINDS.index(kind)], body, ts)]

    def _push(self, uid: int, kind: str, body: str, ts: int) -> dict:
        nid = self._next_notification_id
        self._next_notification_id += 1
        inbox = self._inbox.get(uid)
        if inbox is None:
            inbox = self._inbox[uid] = deque(maxlen=self.max_notifications)
        inbox.append((nid, ts, kind, body, False))
        return {"type": "notification", "user_id": uid, "notification_id": nid, "kind": kind,
                "payload": json.loads(body), "ts": ts}

    def notifications(self, user_id: int, *, unread_only: bool = False, limit: int | None = None) -> list[dict]:
        """The user's kept notifications, newest first."""
        uid = self._slot(user_id)
        if limit is not None:
            _int(limit, "limit", 0, 2**31)
        out = []
        for nid, ts, kind, body, read in reversed(self._inbox.get(uid, ())):
            if unread_only and read:
                continue
            if limit is not None and len(out) >= limit:
                break
            out.append({"notification_id": nid, "kind": kind, "payload": json.loads(body), "ts": ts, "read": read})
        return out

    def unread_count(self, user_id: int) -> int:
        uid = self._slot(user_id)
        return sum(1 for n in self._inbox.get(uid, ()) if not n[4])

    def mark_read(self, user_id: int, notification_ids: Iterable[int] | None, ts: int) -> list[dict]:
        """Mark notifications read: the given ids, or every one (None). Ids
        the inbox no longer holds are ignored (they may have dropped off);
        the event lists the ids that changed."""
        uid = self._slot(user_id)
        wanted = None
        if notification_ids is not None:
            if isinstance(notification_ids, (str, bytes)):
                raise AccountError("notification_ids", "must be a list of ids or None")
            try:
                items = list(notification_ids)
            except TypeError:
                raise AccountError("notification_ids", "must be a list of ids or None") from None
            wanted = {_int(i, "notification_ids", 1, 2**63 - 1) for i in items}
        ts = _ts(ts)
        inbox = self._inbox.get(uid, ())
        changed = []
        for i, n in enumerate(inbox):
            if not n[4] and (wanted is None or n[0] in wanted):
                inbox[i] = (*n[:4], True)
                changed.append(n[0])
        if not changed:
            return []
        return [{"type": "notifications_read", "user_id": uid, "notification_ids": changed, "ts": ts}]

    # -- state ----------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """Canonical bytes of the whole state (canonical JSON, every list
        sorted by id): same state ⇒ same bytes. Holds sealed secrets, never
        plaintext ones, and not the master key."""
        created, ustate, country, text = self._created, self._ustate, self._country, self._texts.get
        users = []
        for slot, s in enumerate(ustate):
            if s & _HOLE:
                continue
            name, email = text(slot).split("\x00")
            users.append([slot, name, email, _COUNTRIES[country[slot]], created[slot],
                          s & _KYC_MASK, (s >> _LEVEL_SHIFT) & 3, 1 if s & _SUSPENDED else 0])
        keys = []
        sealed, kuser, kperm, kips, klabel = self._ksealed, self._kuser, self._kperm, self._kips, self._klabel
        kcreated, krevoked = self._kcreated, self._krevoked
        names = [self._keys.key(k) for k in range(len(self._keys))]
        w = SEALED_BYTES
        for k in sorted(range(len(names)), key=names.__getitem__):
            revoked, ips = krevoked[k], kips[k]
            keys.append([names[k], kuser[k], "" if revoked >= 0 else sealed[k * w : (k + 1) * w].hex(), kperm[k],
                         [str(n) for n in ips] if ips else [], klabel[k], kcreated[k], revoked])
        alerts = [[aid, u, m, _CONDITIONS[c], _dec_str(p), t] for aid, (u, m, c, p, t) in sorted(self._alerts.items())]
        inboxes = [[uid, [list(n) for n in self._inbox[uid]]] for uid in sorted(self._inbox)]
        return _canonical({
            "format": _SNAPSHOT_FORMAT, "version": _SNAPSHOT_VERSION,
            "max_notifications": self.max_notifications,
            "next_alert_id": self._next_alert_id, "next_notification_id": self._next_notification_id,
            "users": users, "api_keys": keys, "alerts": alerts, "notifications": inboxes,
        })

    @classmethod
    def restore(cls, data: bytes, master_key: bytes) -> "Accounts":
        """The state ``snapshot()`` captured; every record is validated again
        (ValueError naming what is wrong). ``master_key`` must be the key that
        sealed the secrets; one active key is opened to check it."""
        try:
            s = json.loads(data)
        except (ValueError, TypeError) as e:
            raise ValueError(f"accounts snapshot unreadable: {e}") from None
        if not isinstance(s, dict) or s.get("format") != _SNAPSHOT_FORMAT or s.get("version") != _SNAPSHOT_VERSION:
            raise ValueError("not an lxdex accounts snapshot (format/version)")
        try:
            return cls._restore(s, master_key)
        except AccountError as e:
            raise AccountError(e.field, f"in snapshot: {str(e)[len(e.field) + 2:]}") from None
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ValueError(f"accounts snapshot malformed: {e!r}") from None

    @classmethod
    def _restore(cls, s: dict, master_key: bytes) -> "Accounts":
        acc = cls(master_key, max_notifications=s["max_notifications"])
        acc._next_alert_id = _int(s["next_alert_id"], "next_alert_id", 1, 2**63)
        acc._next_notification_id = _int(s["next_notification_id"], "next_notification_id", 1, 2**63)
        last = -1
        for uid, name, email, country, created, kyc, level, suspended in s["users"]:
            uid = _user_id(uid)
            if uid <= last or uid >= len(acc._ustate) + MAX_ID_GAP:
                raise AccountError("user_id", "users are not in increasing id order, or too far apart")
            last = uid
            if _email(email) != email or _COUNTRIES[_country(country)] != country:
                raise AccountError("email", "is not in canonical form")
            kyc, level = _enum(KycStatus, kyc, "kyc_status"), _int(level, "level", 0, 3)
            if (kyc == KycStatus.NONE and level) or (kyc == KycStatus.VERIFIED and not level):
                raise AccountError("level", "does not fit the KYC status")
            state = kyc | (level << _LEVEL_SHIFT) | (_SUSPENDED if _int(suspended, "status", 0, 1) else 0)
            acc._insert_user(uid, _display_name(name), email, _country(country), _ts(created), state)
        last_key, checked = "", False
        for api_key, uid, sealed_hex, perm, ips, label, created, revoked in s["api_keys"]:
            if not isinstance(api_key, str) or not _API_KEY.fullmatch(api_key) or api_key <= last_key:
                raise AccountError("api_key", "keys are not valid and in increasing order")
            last_key = api_key
            slot = acc._slot(uid)
            perm, nets, label = _permissions(perm), _ip_allow(ips), _text(label, "label", MAX_LABEL, empty=True)
            if nets is not None and [str(n) for n in nets] != ips:
                raise AccountError("ip_allow", "is not in canonical form")
            if perm & _WITHDRAW and nets is None:
                raise AccountError("ip_allow", "is required for a key with the withdraw permission")
            created = _ts(created)
            revoked = -1 if revoked == -1 else _ts(revoked)
            if revoked >= 0:
                if sealed_hex != "":
                    raise AccountError("sealed_secret", "a revoked key keeps no secret")
                sealed = bytes(SEALED_BYTES)
            else:
                sealed = bytes.fromhex(sealed_hex)
                if len(sealed) != SEALED_BYTES:
                    raise AccountError("sealed_secret", f"must be {SEALED_BYTES} bytes")
                if not checked:
                    if acc._open(uid, api_key, sealed) is None:
                        raise AccountError("master_key", "does not open the snapshot's API key secrets")
                    checked = True
                if acc._nactive[slot] >= MAX_ACTIVE_KEYS:
                    raise AccountError("api_key", f"user {uid} has more than {MAX_ACTIVE_KEYS} active keys")
                acc._nactive[slot] += 1
            k = acc._keys.add(api_key)
            acc._kuser.append(uid)
            acc._kcreated.append(created)
            acc._krevoked.append(revoked)
            acc._kperm.append(perm)
            acc._ksealed += sealed
            acc._klabel.append(label)
            acc._kips.append(nets)
            acc._knext.append(acc._first_key[slot])
            acc._first_key[slot] = k
        last = 0
        for aid, uid, market, cond, price, created in s["alerts"]:
            aid = _int(aid, "alert_id", 1, acc._next_alert_id - 1)
            if aid <= last:
                raise AccountError("alert_id", "alerts are not in increasing id order")
            last = aid
            p = _decimal_price(price, "price")
            if _dec_str(p) != price or cond not in _CONDITIONS:
                raise AccountError("price", "is not in canonical form")
            if acc._alert_count.get(acc._slot(uid), 0) >= MAX_ALERTS:
                raise AccountError("user_id", f"user {uid} has more than {MAX_ALERTS} alerts")
            acc._insert_alert(aid, uid, _market(market), _CONDITIONS.index(cond), p, _ts(created))
        last = -1
        for uid, items in s["notifications"]:
            acc._slot(uid)
            if uid <= last or not items or len(items) > acc.max_notifications:
                raise AccountError("notifications", "inboxes are not in order, empty or too long")
            last = uid
            inbox = acc._inbox[uid] = deque(maxlen=acc.max_notifications)
            prev = 0
            for nid, ts, kind, body, read in items:
                nid = _int(nid, "notification_id", 1, acc._next_notification_id - 1)
                if nid <= prev or kind not in NOTIFICATION_KINDS or not isinstance(read, bool):
                    raise AccountError("notifications", "a notification is out of order or malformed")
                prev = nid
                if not isinstance(body, str) or _payload(json.loads(body)) != body:
                    raise AccountError("payload", "is not canonical JSON")
                inbox.append((nid, _ts(ts), NOTIFICATION_KINDS[NOTIFICATION_KINDS.index(kind)], body, read))
        return acc

    def state_hash(self) -> str:
        """SHA-256 of the canonical snapshot, hex."""
        return hashlib.sha256(self.snapshot()).hexdigest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Accounts):
            return NotImplemented
        return self.snapshot() == other.snapshot()

    __hash__ = None  # type: ignore[assignment]
