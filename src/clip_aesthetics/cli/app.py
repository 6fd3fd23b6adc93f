"""`clip-aesthetics SUBCOMMAND --flags` -> validated settings -> one step of the workflow -> an exit code.

The subcommands are in cli/commands.py, their flags generated from the settings models (settings/), so a bad value
is refused here, before any work starts. This module spells the arguments the way the parser takes them (`--flag`
alone for true, `--backbone` for `--clip`, `--model` repeated) and turns errors into one line and an exit code.
"""

from __future__ import annotations

import os
import sys

from pydantic import ValidationError
from pydantic_settings import CliApp, SettingsError

from clip_aesthetics.cli.commands import ClipAesthetics


def main(argv: list[str] | None = None) -> int:
    """Parse, validate and run one subcommand. Nothing heavy (torch, MLflow) is imported before the arguments
    are accepted, so `--help` and a bad flag answer at once."""
    from clip_aesthetics.errors import PartlyDone, UserError

    args = as_parsed(list(sys.argv[1:] if argv is None else argv))
    # MLflow's per-file "Downloading artifacts" bars: dozens of lines for one model in a terminal.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        CliApp.run(ClipAesthetics, cli_args=args)
    except ValidationError as error:
        for problem in error.errors():
            flag = "--" + str(problem["loc"][-1]).replace("_", "-") if problem["loc"] else "input"
            hint = BOOLEAN_HINT if problem["type"] == "bool_parsing" else ""
            print(f"error: {flag}={problem.get('input')!r}: {problem['msg']}{hint}", file=sys.stderr)
        return 2
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)  # one line: what is wrong and what to do
        return 2
    except PartlyDone as error:  # some grid points or models failed: the work was done, not all of it succeeded
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def as_parsed(args: list[str]) -> list[str]:
    """The arguments as a user may write them -> as the parser takes them."""
    return with_repeated_models(with_explicit_booleans(with_backbone_alias(args)))


BOOLEAN_HINT = "; accepted: true or false (also 1/0, yes/no, on/off), or the flag alone for true"


def _boolean_flags(subcommand: str) -> set[str]:
    for name, field in ClipAesthetics.model_fields.items():
        if subcommand in (name.replace("_", "-"), field.alias):
            model = field.annotation.__args__[0]
            return {n.replace("_", "-") for n, f in model.model_fields.items() if f.annotation is bool}
    return set()


def with_explicit_booleans(args: list[str]) -> list[str]:
    """`--traps` alone -> `--traps true`, `--no-traps` -> `--traps false`; `--norm false` (as MLproject passes
    it) and `--norm=false` stay as they are."""
    if not args:
        return args
    flags = _boolean_flags(args[0])
    out = [args[0]]
    for index, arg in enumerate(args[1:], start=1):
        following = args[index + 1] if index + 1 < len(args) else None
        if arg.startswith("--no-") and arg[5:] in flags:
            out += [f"--{arg[5:]}", "false"]
        elif arg.startswith("--") and arg[2:] in flags and (following is None or following.startswith("--")):
            out += [arg, "true"]
        else:
            out.append(arg)
    return out


def with_backbone_alias(args: list[str]) -> list[str]:
    """`--backbone X` (and `--backbones A,B` for a sweep) -> `--clip X` (`--clips A,B`): the backbone is named
    `clip` in the MLproject card's interface, where it began; both spellings are accepted."""
    out = []
    for arg in args:
        for alias, flag in (("--backbone", "--clip"), ("--backbones", "--clips")):
            if arg == alias or arg.startswith(alias + "="):
                arg = flag + arg[len(alias):]
                break
        out.append(arg)
    return out


def with_repeated_models(args: list[str]) -> list[str]:
    """`evaluate --model A --model B` -> `evaluate --models A,B`."""
    if not args or args[0] != "evaluate" or "--model" not in args:
        return args
    out, models, rest = [args[0]], [], iter(args[1:])
    for arg in rest:
        if arg == "--model":
            models.append(next(rest, ""))
        elif arg.startswith("--model="):
            models.append(arg.split("=", 1)[1])
        else:
            out.append(arg)
    return out + ["--models", ",".join(models)]


if __name__ == "__main__":
    sys.exit(main())
