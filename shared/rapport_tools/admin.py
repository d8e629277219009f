"""``rapport-admin``: provision | token | keys new|jwks | pseudonym.

A Typer application in the style of ``rapport`` (cli.py): every option has help, ``--debug`` is
global, and a Postgres that cannot be reached, a missing file or a refusal is one line on stderr
with exit code 2 (cli_common.py). ``admin_main(argv)`` returns the exit code and exits
(SystemExit) on --help and on errors. The services it provisions are the installed ones
(services.py)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, List, NoReturn, Optional

import typer

from rapport_shared import db
from rapport_shared.http.auth import DEV_KID_PREFIX, TokenAuthority, TokenIssuer
from rapport_shared.settings import ServiceSettings

from . import cli_common
from . import services as registry

# The development issuer's private key, committed in the repository (deploy/dev-keys/README.md).
DEV_SIGNING_KEY = Path("deploy") / "dev-keys" / "issuer.jwk.json"


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


def admin_app() -> typer.Typer:
    """``rapport-admin``: provision | token | keys new|jwks | pseudonym (Typer, the style of ``rapport``)."""
    prog = "rapport-admin"
    app = cli_common.typer_app("Rapport operator commands: provision the database, issue development tokens, manage the "
                 "development issuer's signing keys, derive pseudonymous ids.")
    keys_app = cli_common.typer_app("Signing keys of the development issuer: new keys, JWKS for rotation (docs/access.md).")
    app.add_typer(keys_app, name="keys")

    def usage(message: str, exc: BaseException | None = None) -> NoReturn:
        cli_common.fail(prog, message, exc)

    @app.callback()
    def _root(debug: bool = cli_common.debug_option()) -> None:
        cli_common.set_debug(debug)

    @app.command("provision")
    @cli_common.leaf
    def provision(
        admin_dsn: Optional[str] = typer.Option(None, "--admin-dsn", envvar="RAPPORT_ADMIN_DSN",
                                                help="Postgres DSN of an administrator"),
        database: str = typer.Option("rapport", "--database", envvar="RAPPORT_DATABASE",
                                     help="the database holding the services' schemas"),
        services: Optional[List[str]] = typer.Option(
            None, "--services", help=f"services to provision (repeatable, or several after one --services; "
                                     f"default all: {' '.join(registry.names())})"),
        more: Optional[List[str]] = typer.Argument(None, metavar="[SERVICE]...", show_default=False,
                                                   help="more services (as in `--services intake scheduler`)"),
    ) -> int:
        """Create each service's Postgres role and schema (idempotent). Each role's password comes from
        RAPPORT_DB_PASSWORD_<SERVICE>."""
        known = registry.names()
        chosen = [*(services or []), *(more or [])] or list(known)
        if not admin_dsn:
            usage("--admin-dsn or RAPPORT_ADMIN_DSN is required")
        unknown = [svc for svc in chosen if svc not in known]
        if unknown:
            usage(f"unknown service(s) {', '.join(unknown)}: choose from {', '.join(known)}")
        passwords = {}
        for svc in chosen:
            passwords[svc] = os.environ.get(f"RAPPORT_DB_PASSWORD_{svc.upper()}")
            if not passwords[svc]:
                usage(f"RAPPORT_DB_PASSWORD_{svc.upper()} is not set")

        async def go() -> None:
            for svc in chosen:
                await db.provision(admin_dsn, database, svc, passwords[svc])
                print(f"provisioned role rapport_{svc} and schema {svc}")

        cli_common.guard(prog, lambda: asyncio.run(go()), postgres=admin_dsn)
        return 0

    max_s = _env_int("RAPPORT_AUTH_MAX_TOKEN_LIFETIME_S", ServiceSettings.model_fields["auth_max_token_lifetime_s"].default)

    @app.command("token")
    @cli_common.leaf
    def token(
        sub: str = typer.Option(..., "--sub", help="the subject (a clinician id, a person id for patient_app, ...)"),
        role: List[str] = typer.Option(..., "--role", help="a role (repeat for several)"),
        org: Optional[str] = typer.Option(None, "--org", help="the organisation the caller acts for (claim org)"),
        hours: float = typer.Option(8, "--hours", help=f"lifetime in hours (default 8), at most the services' "
                                                       f"RAPPORT_AUTH_MAX_TOKEN_LIFETIME_S (here {max_s} s = "
                                                       f"{max_s / 3600:g} h; set that variable to the services' value)"),
        audience: str = typer.Option("rapport", "--audience", envvar="RAPPORT_AUTH_AUDIENCE",
                                     help="claim aud"),
        issuer: str = typer.Option("rapport", "--issuer", envvar="RAPPORT_AUTH_ISSUER",
                                   help="claim iss"),
        key: Optional[Path] = typer.Option(None, "--key", help="private EC P-256 JWK to sign with (default "
                                                               "RAPPORT_AUTH_SIGNING_KEY, else the development key "
                                                               "deploy/dev-keys/issuer.jwk.json of this repository)"),
        secret: Optional[str] = typer.Option(None, "--secret", help="DEVELOPMENT ONLY: sign HS256 with a shared "
                                                                    "secret (services configured with "
                                                                    "RAPPORT_AUTH_SECRET and no JWKS; production "
                                                                    "refuses such services)"),
    ) -> int:
        """Issue a signed bearer token (the development issuer: ES256 with a private JWK). In production
        tokens come from your identity provider (docs/access.md); the services hold only its JWKS."""
        if key is not None and secret is not None:
            usage("--key and --secret are mutually exclusive")
        if hours <= 0:
            usage("--hours must be positive")
        if hours * 3600 > max_s:
            usage(f"--hours {hours:g} is over the services' maximum token lifetime ({max_s} s = {max_s / 3600:g} h, "
                  "RAPPORT_AUTH_MAX_TOKEN_LIFETIME_S): they would refuse the token. Raise "
                  "RAPPORT_AUTH_MAX_TOKEN_LIFETIME_S on the services (and here) first.")
        ttl = timedelta(hours=hours)
        if secret is not None:
            print("rapport-admin: HS256 with a shared secret: development only (production refuses it)", file=sys.stderr)
            print(TokenAuthority(secret, issuer=issuer, audience=audience).issue(sub, role, ttl, org=org))
            return 0
        key = key or default_signing_key()
        if key is None:
            usage("no signing key: pass --key FILE (a private JWK), set RAPPORT_AUTH_SIGNING_KEY, or run inside the "
                  "repository (development key deploy/dev-keys/issuer.jwk.json)")
        try:
            signer = TokenIssuer.from_file(key, issuer=issuer, audience=audience)
        except OSError as exc:
            usage(f"signing key {key}: {exc.strerror or exc}", exc)
        except (ValueError, KeyError) as exc:
            usage(f"signing key {key}: {exc}", exc)
        if signer.kid.startswith(DEV_KID_PREFIX):
            print(f"rapport-admin: signed with the development key {signer.kid!r} ({key}); production refuses it",
                  file=sys.stderr)
        print(signer.issue(sub, role, ttl, org=org))
        return 0

    @keys_app.command("new")
    @cli_common.leaf
    def keys_new(
        kid: str = typer.Option(..., "--kid", help=f"key id (production refuses ids starting with {DEV_KID_PREFIX!r})"),
        out: Path = typer.Option(..., "--out", "-o", help="directory for <kid>.jwk.json"),
        jwks: Optional[Path] = typer.Option(None, "--jwks", help="also add the public key to this JWKS file "
                                                                 "(created if missing; written in place)"),
    ) -> int:
        """Write a new private EC P-256 JWK (<out>/<kid>.jwk.json, mode 600) and print its public JWKS.

        For a rotation, publish old and new public keys together (--jwks FILE adds the new one to an
        existing JWKS, or `rapport-admin keys jwks OLD NEW`), let the services pick it up, then sign
        with the new key, and drop the old one once its tokens have expired (docs/access.md)."""
        try:
            out.mkdir(parents=True, exist_ok=True)
            signer = TokenIssuer.generate(kid)
            path = out / f"{kid}.jwk.json"
            try:
                _write_private(path, signer.private_jwk())
            except FileExistsError:
                usage(f"{path} exists: a key file is never overwritten")
            print(f"rapport-admin: private key written to {path} (keep it secret; the services need only the JWKS)",
                  file=sys.stderr)
            doc = signer.jwks()
            if jwks is not None:
                sources = [jwks] if jwks.exists() else []
                doc = merge_jwks([*sources, path])
                jwks.write_text(json.dumps(doc, indent=2) + "\n")
                print(f"rapport-admin: {jwks} now holds {[k['kid'] for k in doc['keys']]}", file=sys.stderr)
        except (OSError, ValueError, KeyError) as exc:
            usage(cli_common.one_line(exc) or str(exc), exc)
        print(json.dumps(doc, indent=2))
        return 0

    @keys_app.command("jwks")
    @cli_common.leaf
    def keys_jwks(
        files: List[Path] = typer.Argument(..., help="JWK files (private or public) and JWKS files"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="write here instead of stdout"),
    ) -> int:
        """Print one JWKS of the public keys in the given JWK/JWKS files: during a rotation it holds
        both keys, so tokens of either verify."""
        try:
            doc = merge_jwks(files)
            text = json.dumps(doc, indent=2)
            if out is not None:
                out.write_text(text + "\n")
        except (OSError, ValueError, KeyError) as exc:
            usage(cli_common.one_line(exc) or str(exc), exc)
        if out is None:
            print(text)
        return 0

    @app.command("pseudonym")
    @cli_common.leaf
    def pseudonym(
        local_ids: List[str] = typer.Argument(..., metavar="LOCAL_ID...",
                                              help="local identifier(s); - reads one per line from stdin"),
        key_file: Path = typer.Option(..., "--key-file", help="the organisation's secret key (raw bytes)"),
        prefix: str = typer.Option("P", "--prefix", help="letters saying what the id names (default P, a person)"),
    ) -> int:
        """Derive the pseudonymous id of local identifiers (keyed hash; docs/privacy.md).

        Prints, one per line, the pseudonymous id of each LOCAL_ID (your own patient number, say):
        PREFIX-base32(HMAC-SHA256(key, LOCAL_ID))[:16], lower case. The same key and LOCAL_ID always
        give the same id; without the key nobody can go back from the id to the number. Keep the key
        file as safe as your patient index (at least 16 bytes, e.g. `head -c 32 /dev/urandom > F`)."""
        from rapport_shared import pseudonyms  # noqa: PLC0415

        try:
            secret = key_file.read_bytes()
        except OSError as exc:
            usage(f"key file {key_file}: {exc.strerror or exc}", exc)
        ids = [line for x in local_ids for line in (sys.stdin.read().splitlines() if x == "-" else [x])]
        try:
            for local_id in ids:
                if local_id.strip():
                    print(pseudonyms.derive(secret, local_id, prefix=prefix))
        except ValueError as exc:
            usage(str(exc), exc)
        return 0

    return app


def admin_main(argv: list[str] | None = None) -> int:
    return cli_common.invoke(admin_app(), "rapport-admin", argv)


if __name__ == "__main__":
    sys.exit(admin_main())
