"""The signing keys of an embedded fleet: made once per state directory, handed to the
services through their settings, and the operator's seed for `fleet approve`.

`fleet up` with no `[signing]` keys configured keeps a key pair for the
cost-guard, the provisioner, the watcher and the local operator under `.fleet/keys/` (seed
files, mode 0600), creating the ones that are missing, and passes each service
the public keys it checks and the path of its own seed (never the seed itself)
in `FLEET_SIGNING__*` variables. The keys live as long as the state directory,
not one run: the streams there keep signed verdicts and unit events, and a
restarted fleet must still believe the ones it signed before.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping
from pathlib import Path

from services.kit.config import STATE_DIR, gather
from services.kit.errors import ConfigError
from services.kit.signing import Signer, new_seed, read_seed, write_seed

KEYS_DIR = Path(STATE_DIR) / "keys"
SIGNERS = ("costguard", "provisioner", "watcher")
"""The services that sign what they publish, each with a seed of its own."""
OPERATOR_SEED_ENV = "FLEET_OPERATOR_SEED"
OPERATOR_SEED_FILE_ENV = "FLEET_OPERATOR_SEED_FILE"
OPERATOR_FILE = "operator.nk"


def operator_name() -> str:
    """The local user's name as a subject token: the generated operator key's name."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", getpass.getuser())[:64] or "operator"


def keep_key(path: Path) -> Signer:
    """The signer whose seed is in `path`, making the seed first when there is none."""
    if not path.is_file():
        write_seed(path, new_seed())
    return Signer(read_seed(path))


def configured(config: str | None, env: Mapping[str, str] | None = None) -> bool:
    """True when fleet.toml or the environment names the signing keys already."""
    signing = gather(config, env).data.get("signing", {})
    return isinstance(signing, dict) and bool(
        signing.get("costguard_key") or signing.get("provisioner_key")
    )


def fleet_env(keys_dir: Path = KEYS_DIR) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The variables every service gets (public keys, operators) and, per signing service,
    the path of its own seed; the key files are made when missing."""
    signers = {name: keep_key(keys_dir / f"{name}.nk") for name in SIGNERS}
    operator = keep_key(keys_dir / OPERATOR_FILE)
    common = {
        "FLEET_SIGNING__COSTGUARD_KEY": signers["costguard"].public_key,
        "FLEET_SIGNING__PROVISIONER_KEY": signers["provisioner"].public_key,
        "FLEET_SIGNING__WATCHER_KEY": signers["watcher"].public_key,
        "FLEET_SIGNING__OPERATORS": f'{{ "{operator.public_key}" = "{operator_name()}" }}',
    }
    own = {
        name: {"FLEET_SIGNING__SEED_FILE": str((keys_dir / f"{name}.nk").resolve())}
        for name in SIGNERS
    }
    return common, own


def operator_signer(env: Mapping[str, str] | None = None) -> Signer:
    """The operator's signer for `fleet approve|reject`: FLEET_OPERATOR_SEED, else the file
    FLEET_OPERATOR_SEED_FILE names, else `.fleet/keys/operator.nk` (what `fleet up` made)."""
    env = os.environ if env is None else env
    if seed := env.get(OPERATOR_SEED_ENV, "").strip():
        return Signer(seed.encode())
    path = Path(env.get(OPERATOR_SEED_FILE_ENV, "") or KEYS_DIR / OPERATOR_FILE)
    if not path.is_file():
        raise ConfigError(
            f"no operator key: {path} does not exist. Set {OPERATOR_SEED_FILE_ENV} to your seed "
            f"file (`fleet keys new FILE` makes one; its public key must be in [signing] "
            "operators), or run from the directory of `fleet up`, which makes "
            f"{KEYS_DIR / OPERATOR_FILE}"
        )
    return Signer(read_seed(path))
