"""Command lines: each service's ``rapport-<svc> migrate|run|openapi`` and ``rapport-admin``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from . import db
from .http.auth import DEV_KID_PREFIX, TokenAuthority, TokenIssuer
from .logging import configure_logging
from .settings import ServiceSettings

SERVICES = ("intake", "scheduler", "outcomes", "notifier")
# The development issuer's private key, committed in the repository (deploy/dev-keys/README.md).
DEV_SIGNING_KEY = Path("deploy") / "dev-keys" / "issuer.jwk.json"


def service_main(name: str, load_settings: Callable[[], ServiceSettings], build_app: Callable, argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"rapport-{name}", description=f"Rapport {name} service")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("migrate", help="apply this service's SQL migrations to its schema, then exit")
    sub.add_parser("run", help="run the service (HTTP API, consumers, outbox relay)")
    sub.add_parser("openapi", help="print the OpenAPI document")
    _replay_parser(sub)
    args = p.parse_args(argv)
    try:
        settings = load_settings()
        _check_token_verification(settings)
    except (ValueError, RuntimeError, OSError) as exc:
        # One clear line, not a traceback: a refused configuration (production with an HMAC secret,
        # without a JWKS, with a development key; an unreadable JWKS) is the operator's to fix.
        # ValidationError's own text would also print the input values, secrets included.
        print(f"rapport-{name}: refusing to start: {_config_error(exc)}", file=sys.stderr)
        return 2
    configure_logging(name, settings.log_format, settings.log_level)
    if args.cmd == "migrate":
        return asyncio.run(_migrate(settings, build_app))
    if args.cmd == "replay":
        from .replay_cli import main as replay_main

        return replay_main(name, settings, build_app, args)
    app = build_app(settings)
    if args.cmd == "openapi":
        print(json.dumps(app.openapi(), indent=2))
        return 0
    import uvicorn

    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level="warning", access_log=False)
    return 0


def _check_token_verification(settings: ServiceSettings) -> None:
    """Load the service's token verifier once before anything else (the JWKS, production's refusal
    of development keys), so that a refused key is reported as configuration, not as a traceback."""
    from .http.app import token_verifier  # noqa: PLC0415 (FastAPI is not needed to parse arguments)

    token_verifier(settings)


def _config_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic's ValidationError: the messages, without the input values
        parts = []
        for e in errors():
            msg = str(e.get("msg", "")).removeprefix("Value error, ")
            loc = ".".join(str(x) for x in e.get("loc", ()))
            parts.append(f"{('RAPPORT_' + loc.upper() + ': ') if loc else ''}{msg}")
        return "; ".join(parts)
    return str(exc)


def _replay_parser(sub) -> None:
    rp = sub.add_parser("replay", help="rebuild this service's projection from Kafka into a shadow schema (docs/replay.md)")
    rsub = rp.add_subparsers(dest="replay_cmd", required=True)
    admin = {"default": os.environ.get("RAPPORT_ADMIN_DSN"), "help": "Postgres admin DSN (or RAPPORT_ADMIN_DSN)"}
    run = rsub.add_parser("run", help="replay into a shadow schema with a fresh consumer group (resumes an existing shadow)")
    run.add_argument("--shadow", help="shadow schema (default <schema>_replay_<UTC timestamp>)")
    run.add_argument("--group", help="consumer group (default <group>-replay-<UTC timestamp>; a resumed shadow keeps its own)")
    run.add_argument("--since", help="start at this time (RFC 3339 or epoch ms) instead of the beginning")
    run.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    run.add_argument("--no-verify", action="store_true", help="do not compare with the live projection at the end")
    run.add_argument("--admin-dsn", **admin)
    ver = rsub.add_parser("verify", help="content hash per projection table, shadow against live (exit 1 if any differ)")
    ver.add_argument("--shadow", required=True)
    ver.add_argument("--json", action="store_true")
    sw = rsub.add_parser("swap", help="replace the live projection with the shadow's (dry run unless --apply)")
    sw.add_argument("--shadow", required=True)
    sw.add_argument("--apply", action="store_true")
    sw.add_argument("--admin-dsn", **admin)
    dr = rsub.add_parser("drop", help="drop a shadow schema")
    dr.add_argument("--shadow", required=True)
    dr.add_argument("--admin-dsn", **admin)
    rsub.add_parser("describe", help="print what this service's projection is")


async def _migrate(settings: ServiceSettings, build_app: Callable) -> int:
    runtime = build_app(settings).state.runtime
    conn = await __import__("asyncpg").connect(settings.database_dsn)
    try:
        applied = await db.migrate(conn, settings.db_schema, runtime.migrations)
    finally:
        await conn.close()
    print(json.dumps({"service": settings.service_name, "applied": applied}))
    return 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def default_signing_key() -> Path | None:
    """The key ``rapport-admin token`` signs with when given no ``--key``: RAPPORT_AUTH_SIGNING_KEY,
    else the development key deploy/dev-keys/issuer.jwk.json of the repository this runs in (looked
    for above the working directory, then above this package's source). It is deliberately not
    packaged into the wheels: the service images hold no signing key, development or not."""
    env = os.environ.get("RAPPORT_AUTH_SIGNING_KEY", "").strip()
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for base in (Path.cwd().resolve(), *Path.cwd().resolve().parents, *here.parents):
        candidate = base / DEV_SIGNING_KEY
        if candidate.is_file():
            return candidate
    return None


# Members of a JWK that make it private (EC: d; RSA: d, p, q, dp, dq, qi, oth; oct: k).
_PUBLIC_MEMBERS = {"EC": ("kty", "crv", "x", "y"), "RSA": ("kty", "n", "e")}
_META_MEMBERS = ("kid", "alg", "use")


def public_jwk(jwk: dict[str, Any], source: str = "") -> dict[str, Any]:
    """The public part of an EC or RSA JWK (private or public), with its kid, alg and use."""
    kty = jwk.get("kty")
    if kty not in _PUBLIC_MEMBERS:
        raise ValueError(f"{source}: key {jwk.get('kid')!r} is {kty!r}; a JWKS publishes EC or RSA keys only")
    if not jwk.get("kid"):
        raise ValueError(f"{source}: every key needs a kid")
    missing = [m for m in _PUBLIC_MEMBERS[kty] if m not in jwk]
    if missing:
        raise ValueError(f"{source}: key {jwk['kid']!r} lacks {missing}")
    return {m: jwk[m] for m in (*_PUBLIC_MEMBERS[kty], *_META_MEMBERS) if m in jwk}


def merge_jwks(paths: list[Path]) -> dict[str, Any]:
    """One JWKS of the public keys in ``paths`` (each a JWK, private or public, or a JWKS), in order.
    The same kid twice is fine if it is the same key; two different keys under one kid are refused."""
    keys: dict[str, dict[str, Any]] = {}
    for path in paths:
        doc = json.loads(Path(path).read_text())
        for raw in (doc["keys"] if "keys" in doc else [doc]):
            pub = public_jwk(raw, str(path))
            seen = keys.get(pub["kid"])
            if seen is not None and seen != pub:
                raise ValueError(f"{path}: kid {pub['kid']!r} names two different keys")
            keys[pub["kid"]] = pub
    if not keys:
        raise ValueError("no key given")
    return {"keys": list(keys.values())}


def _write_private(path: Path, doc: dict[str, Any]) -> None:
    """Create ``path`` (mode 0600; never over an existing file) holding ``doc``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(doc, indent=2) + "\n")


def _admin_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rapport-admin", description="Rapport operator commands")
    sub = p.add_subparsers(dest="cmd", required=True)
    prov = sub.add_parser("provision", help="create each service's Postgres role and schema (admin DSN)")
    prov.add_argument("--admin-dsn", default=os.environ.get("RAPPORT_ADMIN_DSN"))
    prov.add_argument("--database", default=os.environ.get("RAPPORT_DATABASE", "rapport"))
    prov.add_argument("--services", nargs="*", default=list(SERVICES))

    max_s = _env_int("RAPPORT_AUTH_MAX_TOKEN_LIFETIME_S", ServiceSettings.model_fields["auth_max_token_lifetime_s"].default)
    tok = sub.add_parser(
        "token", help="issue a signed bearer token (the development issuer: ES256 with a private JWK)",
        description="Sign a bearer token with a private JWK (ES256), as the development issuer. In production "
                    "tokens come from your identity provider (docs/access.md); the services hold only its JWKS.")
    tok.add_argument("--sub", required=True, help="the subject (a clinician id, a person id for patient_app, ...)")
    tok.add_argument("--role", action="append", required=True, help="a role (repeat for several)")
    tok.add_argument("--org", default=None, help="the organisation the caller acts for (claim org)")
    tok.add_argument("--hours", type=float, default=8,
                     help=f"lifetime in hours (default 8), at most the services' RAPPORT_AUTH_MAX_TOKEN_LIFETIME_S "
                          f"(here {max_s} s = {max_s / 3600:g} h; set that variable to the services' value)")
    tok.add_argument("--audience", default=os.environ.get("RAPPORT_AUTH_AUDIENCE", "rapport"),
                     help="claim aud (default RAPPORT_AUTH_AUDIENCE or rapport)")
    tok.add_argument("--issuer", default=os.environ.get("RAPPORT_AUTH_ISSUER", "rapport"),
                     help="claim iss (default RAPPORT_AUTH_ISSUER or rapport)")
    how = tok.add_mutually_exclusive_group()
    how.add_argument("--key", type=Path, default=None,
                     help="private EC P-256 JWK to sign with (default RAPPORT_AUTH_SIGNING_KEY, else the "
                          "development key deploy/dev-keys/issuer.jwk.json of this repository)")
    how.add_argument("--secret", default=None,
                     help="DEVELOPMENT ONLY: sign HS256 with a shared secret (services configured with "
                          "RAPPORT_AUTH_SECRET and no JWKS; production refuses such services)")
    tok.set_defaults(max_lifetime_s=max_s)

    keys = sub.add_parser("keys", help="signing keys of the development issuer: new keys, JWKS for rotation")
    ksub = keys.add_subparsers(dest="keys_cmd", required=True)
    new = ksub.add_parser(
        "new", help="write a new private EC P-256 JWK (<out>/<kid>.jwk.json, mode 600) and print its public JWKS",
        description="Write a new signing key. For a rotation, publish old and new public keys together "
                    "(--jwks FILE adds the new one to an existing JWKS, or `rapport-admin keys jwks OLD NEW`), "
                    "let the services pick it up, then sign with the new key, and drop the old one once its "
                    "tokens have expired (docs/access.md).")
    new.add_argument("--kid", required=True, help="key id (production refuses ids starting with "
                                                  f"{DEV_KID_PREFIX!r})")
    new.add_argument("--out", type=Path, required=True, help="directory for <kid>.jwk.json")
    new.add_argument("--jwks", type=Path, default=None,
                     help="also add the public key to this JWKS file (created if missing; written in place)")
    merge = ksub.add_parser("jwks", help="print one JWKS of the public keys in the given JWK/JWKS files",
                            description="Merge the public parts of JWK files (private or public) and JWKS files "
                                        "into one JWKS: during a rotation it holds both keys, so tokens of either verify.")
    merge.add_argument("files", nargs="+", type=Path)
    merge.add_argument("--out", type=Path, default=None, help="write here instead of stdout")
    return p


def _token(p: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.hours <= 0:
        p.error("--hours must be positive")
    if args.hours * 3600 > args.max_lifetime_s:
        p.error(f"--hours {args.hours:g} is over the services' maximum token lifetime "
                f"({args.max_lifetime_s} s = {args.max_lifetime_s / 3600:g} h, RAPPORT_AUTH_MAX_TOKEN_LIFETIME_S): they "
                "would refuse the token. Raise RAPPORT_AUTH_MAX_TOKEN_LIFETIME_S on the services (and here) first.")
    ttl = timedelta(hours=args.hours)
    if args.secret is not None:
        print("rapport-admin: HS256 with a shared secret: development only (production refuses it)", file=sys.stderr)
        print(TokenAuthority(args.secret, issuer=args.issuer, audience=args.audience)
              .issue(args.sub, args.role, ttl, org=args.org))
        return 0
    key = args.key or default_signing_key()
    if key is None:
        p.error("no signing key: pass --key FILE (a private JWK), set RAPPORT_AUTH_SIGNING_KEY, or run inside the "
                "repository (development key deploy/dev-keys/issuer.jwk.json)")
    try:
        issuer = TokenIssuer.from_file(key, issuer=args.issuer, audience=args.audience)
    except (OSError, ValueError, KeyError) as exc:
        p.error(f"signing key {key}: {exc}")
    if issuer.kid.startswith(DEV_KID_PREFIX):
        print(f"rapport-admin: signed with the development key {issuer.kid!r} ({key}); production refuses it",
              file=sys.stderr)
    print(issuer.issue(args.sub, args.role, ttl, org=args.org))
    return 0


def _keys(p: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        if args.keys_cmd == "new":
            args.out.mkdir(parents=True, exist_ok=True)
            issuer = TokenIssuer.generate(args.kid)
            path = args.out / f"{args.kid}.jwk.json"
            try:
                _write_private(path, issuer.private_jwk())
            except FileExistsError:
                p.error(f"{path} exists: a key file is never overwritten")
            print(f"rapport-admin: private key written to {path} (keep it secret; the services need only the JWKS)",
                  file=sys.stderr)
            doc = issuer.jwks()
            if args.jwks is not None:
                sources = [args.jwks] if args.jwks.exists() else []
                doc = merge_jwks([*sources, path])
                args.jwks.write_text(json.dumps(doc, indent=2) + "\n")
                print(f"rapport-admin: {args.jwks} now holds {[k['kid'] for k in doc['keys']]}", file=sys.stderr)
            print(json.dumps(doc, indent=2))
            return 0
        doc = merge_jwks(args.files)
    except (OSError, ValueError, KeyError) as exc:
        p.error(str(exc))
    text = json.dumps(doc, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    else:
        print(text)
    return 0


def admin_main(argv: list[str] | None = None) -> int:
    p = _admin_parser()
    args = p.parse_args(argv)
    if args.cmd == "token":
        return _token(p, args)
    if args.cmd == "keys":
        return _keys(p, args)
    if not args.admin_dsn:
        p.error("--admin-dsn or RAPPORT_ADMIN_DSN is required")

    async def go() -> None:
        for svc in args.services:
            password = os.environ.get(f"RAPPORT_DB_PASSWORD_{svc.upper()}")
            if not password:
                raise SystemExit(f"RAPPORT_DB_PASSWORD_{svc.upper()} is not set")
            await db.provision(args.admin_dsn, args.database, svc, password)
            print(f"provisioned role rapport_{svc} and schema {svc}")

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(admin_main())
