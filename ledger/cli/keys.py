"""``ledger keys``: the signing keys of grants, decisions and checkpoints."""

from __future__ import annotations

import typer

from ledger.cli.output import HomeOpt, JsonOpt, console, emit_json, settings_for, table

app = typer.Typer(help="Signing keys (Ed25519).", no_args_is_help=True)


@app.command("list")
def list_keys(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Every signing key; the active one signs, all of them verify."""
    from ledger.keystore import load_keyring

    keys = load_keyring(settings_for(home).keys_dir)
    rows = [{"kid": kid, "active": kid == keys.active.kid} for kid in keys.signing]
    if json_out:
        emit_json(rows)
    else:
        table(
            "Signing keys",
            ["kid", "active"],
            [(r["kid"], "yes" if r["active"] else "") for r in rows],
        )


@app.command("rotate")
def rotate(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Make a new active signing key; earlier tokens and checkpoints stay verifiable.
    Restart `ledger serve` to sign with it."""
    from ledger.keystore import rotate_signing_key

    key = rotate_signing_key(settings_for(home).keys_dir)
    if json_out:
        emit_json({"kid": key.kid, "active": True})
    else:
        console.print(f"New active signing key {key.kid}; old keys stay in the JWKS.")
