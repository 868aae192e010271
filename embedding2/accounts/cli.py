"""``embedding2 keys | accounts | usage``: manage accounts and API keys, and report usage.

Every subcommand takes ``--data-dir DIR`` (default: ``$EMBEDDING2_DATA_DIR``, else the platform's user
data directory, ``platformdirs.user_data_dir("embedding2")``, e.g. ``~/.local/share/embedding2``).
``keys create`` prints the new key ``<id>.<secret>`` alone on the last line of standard output
(explanations go to standard error), so ``KEY=$(embedding2 keys create --tier V1 | tail -n1)`` works.
Secrets are shown exactly once, at creation; nothing else ever prints them.

Registered into the ``embedding2`` command by ``embedding2.cli`` (``register``); also runnable alone as
``python -m embedding2.accounts.cli``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from embedding2.accounts.errors import AccountsError
from embedding2.accounts.manager import DEFAULT_ACCOUNT, Accounts
from embedding2.accounts.settings import AccountsSettings
from embedding2.accounts.store import AccountRow, yuan
from embedding2.errors import Embedding2Error


def _data_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        help="accounts/keys/ledger directory (default: $EMBEDDING2_DATA_DIR or the user data dir)",
    )


def _open(args: argparse.Namespace) -> Accounts:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None) is not None:
        overrides["data_dir"] = args.data_dir
    settings = AccountsSettings(**overrides)
    return Accounts.open(settings.data_dir, settings)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _account_json(a: AccountRow, accounts: Accounts) -> dict[str, Any]:
    return {
        "name": a.name,
        "id": a.id,
        "tier": a.tier,
        "concurrency": accounts.tier_limit(a.tier),
        "balance_yuan": None if a.balance_nano is None else str(yuan(a.balance_nano)),
        "token_quota": a.token_quota,
        "created_at": _when(a.created_at),
    }


# --------------------------------------------------------------------------- keys
def cmd_keys_create(args: argparse.Namespace) -> int:
    with _open(args) as accounts:
        new = accounts.create_key(args.account, args.tier)
    print(
        f"created key {new.key_id} for account {new.account_name!r} (tier {new.tier}); "
        "the key is shown only now, store it safely:",
        file=sys.stderr,
    )
    sys.stderr.flush()
    print(new.token)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    with _open(args) as accounts:
        keys = accounts.list_keys(args.account)
    if args.json:
        out = [
            {
                "id": k.key_id,
                "account": k.account_name,
                "account_id": k.account_id,
                "created_at": _when(k.created_at),
                "revoked": k.revoked,
                "revoked_at": _when(k.revoked_at) if k.revoked else None,
            }
            for k in keys
        ]
        print(json.dumps(out, indent=2))
        return 0
    _table(
        [[k.key_id, k.account_name, _when(k.created_at), _when(k.revoked_at) if k.revoked else "no"] for k in keys],
        ["id", "account", "created", "revoked"],
    )
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    with _open(args) as accounts:
        accounts.revoke_key(args.key_id)
    print(f"revoked key {args.key_id.split('.', 1)[0]}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- accounts
def cmd_accounts_list(args: argparse.Namespace) -> int:
    with _open(args) as accounts:
        rows = [_account_json(a, accounts) for a in accounts.list_accounts()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _table(
        [
            [
                r["name"],
                r["id"],
                r["tier"],
                str(r["concurrency"]),
                "unmetered" if r["balance_yuan"] is None else r["balance_yuan"],
                "unmetered" if r["token_quota"] is None else str(r["token_quota"]),
                r["created_at"],
            ]
            for r in rows
        ],
        ["name", "id", "tier", "concurrency", "balance (yuan)", "tokens left", "created"],
    )
    return 0


def _print_account(a: AccountRow, accounts: Accounts) -> None:
    print(json.dumps(_account_json(a, accounts)))


def cmd_accounts_create(args: argparse.Namespace) -> int:
    with _open(args) as accounts:
        _print_account(accounts.create_account(args.name, args.tier), accounts)
    return 0


def cmd_accounts_set_tier(args: argparse.Namespace) -> int:
    with _open(args) as accounts:
        _print_account(accounts.set_tier(args.name, args.tier), accounts)
    return 0


def _amount(args: argparse.Namespace, what: str) -> Any:
    if args.unlimited == (args.amount is not None):
        raise AccountsError(f"give either a {what} or --unlimited")
    if args.unlimited and args.add:
        raise AccountsError("--add needs an amount")
    return args.amount


def cmd_accounts_set_quota(args: argparse.Namespace) -> int:
    amount = _amount(args, "token count")
    tokens = None
    if amount is not None:
        try:
            tokens = int(amount)
        except ValueError as exc:
            raise AccountsError("the token quota must be a whole number") from exc
    with _open(args) as accounts:
        _print_account(accounts.set_token_quota(args.name, tokens, add=args.add), accounts)
    return 0


def cmd_accounts_set_balance(args: argparse.Namespace) -> int:
    amount = _amount(args, "balance in yuan")
    value = None
    if amount is not None:
        try:
            value = Decimal(amount)
        except InvalidOperation as exc:
            raise AccountsError("the balance must be a number of yuan, e.g. 12.5") from exc
        if not value.is_finite():
            raise AccountsError("the balance must be a finite number of yuan")
    with _open(args) as accounts:
        _print_account(accounts.set_balance(args.name, value, add=args.add), accounts)
    return 0


# --------------------------------------------------------------------------- usage
def cmd_usage(args: argparse.Namespace) -> int:
    since = None
    if args.since:
        try:
            since = date.fromisoformat(args.since)
        except ValueError as exc:
            raise AccountsError("--since must be a date YYYY-MM-DD") from exc
    with _open(args) as accounts:
        days = accounts.usage(args.account, since)
        price = accounts.settings.price_per_million_tokens
    totals: dict[str, list[int]] = {}
    for d in days:
        t = totals.setdefault(d.account_name, [0, 0, 0])
        t[0] += d.requests
        t[1] += d.tokens
        t[2] += d.cost_nano
    if args.json:
        out = {
            "price_per_million_tokens_yuan": str(price),
            "days": [
                {
                    "account": d.account_name,
                    "account_id": d.account_id,
                    "day": d.day,
                    "requests": d.requests,
                    "tokens": d.tokens,
                    "cost_yuan": str(yuan(d.cost_nano)),
                }
                for d in days
            ],
            "totals": [
                {"account": name, "requests": t[0], "tokens": t[1], "cost_yuan": str(yuan(t[2]))}
                for name, t in totals.items()
            ],
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    rows: list[list[str]] = []
    for name, t in totals.items():
        for d in days:
            if d.account_name == name:
                rows.append([name, d.day, str(d.requests), str(d.tokens), str(yuan(d.cost_nano))])
        rows.append([name, "total", str(t[0]), str(t[1]), str(yuan(t[2]))])
    print(f"usage per account and UTC day (price {price} yuan per million tokens)", file=sys.stderr)
    _table(rows, ["account", "day", "requests", "tokens", "cost (yuan)"])
    return 0


# --------------------------------------------------------------------------- wiring
def register(subparsers: Any) -> None:
    """Add ``keys``, ``accounts`` and ``usage`` to the ``embedding2`` command's subparsers."""
    keys = subparsers.add_parser("keys", help="create, list and revoke API keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    p = ksub.add_parser("create", help="create a key; prints <id>.<secret> alone on the last line")
    p.add_argument("--tier", help="tier of the key's account (V0, V1, V2, V3); applied to an existing account")
    p.add_argument("--account", default=DEFAULT_ACCOUNT, help=f"account name, created if missing ({DEFAULT_ACCOUNT})")
    _data_dir_arg(p)
    p.set_defaults(func=cmd_keys_create)
    p = ksub.add_parser("list", help="key ids, accounts, creation and revocation (never secrets)")
    p.add_argument("--account", help="only this account's keys")
    p.add_argument("--json", action="store_true")
    _data_dir_arg(p)
    p.set_defaults(func=cmd_keys_list)
    p = ksub.add_parser("revoke", help="revoke a key by id")
    p.add_argument("key_id", metavar="ID", help="the key id (the part before the dot)")
    _data_dir_arg(p)
    p.set_defaults(func=cmd_keys_revoke)

    acc = subparsers.add_parser("accounts", help="accounts, tiers, token quotas and prepaid balances")
    asub = acc.add_subparsers(dest="accounts_command", required=True)
    p = asub.add_parser("list", help="accounts with tier, concurrency, balance and quota")
    p.add_argument("--json", action="store_true")
    _data_dir_arg(p)
    p.set_defaults(func=cmd_accounts_list)
    p = asub.add_parser("create", help="create an account")
    p.add_argument("name")
    p.add_argument("--tier", help="V0 (default), V1, V2 or V3")
    _data_dir_arg(p)
    p.set_defaults(func=cmd_accounts_create)
    p = asub.add_parser("set-tier", help="change an account's tier (its concurrent-request limit)")
    p.add_argument("name")
    p.add_argument("tier")
    _data_dir_arg(p)
    p.set_defaults(func=cmd_accounts_set_tier)
    for name, what, func in (
        ("set-quota", "tokens the account may still use", cmd_accounts_set_quota),
        ("set-balance", "prepaid balance in yuan", cmd_accounts_set_balance),
    ):
        p = asub.add_parser(name, help=f"set the {what}; requests are refused (429/1113) once it is spent")
        p.add_argument("name")
        p.add_argument("amount", nargs="?", help=what)
        p.add_argument("--add", action="store_true", help="add the amount to what is left (a top-up)")
        p.add_argument("--unlimited", action="store_true", help="stop metering this account this way")
        _data_dir_arg(p)
        p.set_defaults(func=func)

    p = subparsers.add_parser("usage", help="requests, tokens and cost per account and UTC day")
    p.add_argument("--account", help="only this account")
    p.add_argument("--since", help="from this UTC day on (YYYY-MM-DD)")
    p.add_argument("--json", action="store_true", help="machine-readable; costs as exact decimal strings")
    _data_dir_arg(p)
    p.set_defaults(func=cmd_usage)


def main(argv: Sequence[str] | None = None) -> int:
    """Run these subcommands alone (``python -m embedding2.accounts.cli keys create ...``)."""
    parser = argparse.ArgumentParser(prog="embedding2", description="embedding2 accounts, keys and usage")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Embedding2Error as exc:
        print(f"embedding2: error {exc.code}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
