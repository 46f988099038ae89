"""`vmctl completion bash`: a bash completion script for vmctl's actions, paths, parameters
and options.

`source <(vmctl completion bash)` (or save it as
`/etc/bash_completion.d/vmctl`). It completes, by position:

- the action (`get`, `set`, ..., `events`, `completion`);
- the path: `/vm/status`, `/task/`, `/vm/<hostname>/` with the hostnames vmd knows (asked
  with `vmctl get /vm/status --csv --timeout 2`, using the `-u` of the command line or
  the environment), then the VM's paths that fit the action (`get`: status, current,
  history; `set`: start, stop, reboot, current, define);
- the path's parameters (`-force`, `-timeout`, ... for stop), and the fields after
  `-order_by`;
- `--options` anywhere (es's output formats included); `events` takes its own.

The words come from the tables below, which are those vmctl and vmd use, so the script
cannot name a parameter or format that does not exist.
"""

from __future__ import annotations

from collections.abc import Mapping

from vmd.cli.vmctl_args import METHODS
from vmd.cli.vmctl_output import OUTPUT_FORMATS, TABLE_COLUMNS

# The parameters of each path (by its last segments), as vmd accepts them (docs/protocol.md).
PARAMETERS: Mapping[str, tuple[str, ...]] = {
    "/vm/status": ("order_by",),
    "status/start": ("update", "cdimage", "cdimage_once", "cdimage2"),
    "status/stop": ("force", "timeout", "freeze", "unfreeze", "update"),
    "status/reboot": ("force", "timeout", "update"),
    "status/current": ("force",),
    "status/history": ("limit", "before"),
}
# A VM's paths after /vm/<vm>/, by HTTP method.
VM_PATHS: Mapping[str, tuple[str, ...]] = {
    "GET": ("status", "status/current", "status/history"),
    "PUT": ("status/start", "status/stop", "status/reboot", "status/current", "define"),
}
VALUE_OPTIONS = ("-u", "--url", "--timeout", "--message-id", "--vm", "--task", "--owner")
OPTIONS = ("--url", "--timeout", "--no-wait", "--message-id", "--debug", "--help",
           "--version", *sorted(f"--{fmt}" for fmt in OUTPUT_FORMATS))
EVENTS_OPTIONS = ("--vm", "--task", "--owner", "--json", "--debug", "--url")

_SCRIPT = r"""# bash completion for vmctl: source <(vmctl completion bash)
_vmctl_vms() {
    local url="$1"
    command vmctl ${url:+-u "$url"} --timeout 2 get /vm/status --csv 2>/dev/null \
        | tr -d '\r' | tail -n +2 | cut -d';' -f1
}

_vmctl() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev=""
    ((COMP_CWORD > 0)) && prev="${COMP_WORDS[COMP_CWORD-1]}"
    local action="" path="" url="" w skip="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        if [[ -n $skip ]]; then
            [[ $skip == -u || $skip == --url ]] && url="$w"
            skip=""
            continue
        fi
        case " @VALUE_OPTIONS@ " in *" $w "*) skip="$w"; continue ;; esac
        [[ $w == -* && -z $action ]] && continue
        [[ $w == --* ]] && continue
        if [[ -z $action ]]; then action="$w"
        elif [[ -z $path && $w == /* ]]; then path="$w"
        fi
    done
    COMPREPLY=()
    case " @VALUE_OPTIONS@ " in *" $prev "*) return 0 ;; esac
    if [[ $action == events ]]; then
        COMPREPLY=($(compgen -W "@EVENTS_OPTIONS@" -- "$cur"))
        return 0
    fi
    if [[ $cur == --* ]]; then
        COMPREPLY=($(compgen -W "@OPTIONS@" -- "$cur"))
        return 0
    fi
    if [[ -z $action ]]; then
        COMPREPLY=($(compgen -W "@ACTIONS@ events completion" -- "$cur"))
        return 0
    fi
    if [[ $action == completion ]]; then
        COMPREPLY=($(compgen -W "bash" -- "$cur"))
        return 0
    fi
    local method
    case $action in
        @METHOD_CASES@
        *) return 0 ;;
    esac
    if [[ -z $path ]]; then
        if [[ $cur == /vm/*/* ]]; then
            local vm="${cur#/vm/}"
            vm="${vm%%/*}"
            local p paths=""
            for p in $(_vmctl_vm_paths "$method"); do paths+=" /vm/$vm/$p"; done
            COMPREPLY=($(compgen -W "$paths" -- "$cur"))
        elif [[ $cur == /vm/* ]]; then
            local h vms="/vm/status"
            for h in $(_vmctl_vms "$url"); do vms+=" /vm/$h/"; done
            COMPREPLY=($(compgen -W "$vms" -- "$cur"))
            [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == */ ]] && compopt -o nospace 2>/dev/null
        else
            COMPREPLY=($(compgen -W "/vm/ /vm/status /task/" -- "$cur"))
            [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == */ ]] && compopt -o nospace 2>/dev/null
        fi
        return 0
    fi
    if [[ $prev == -order_by ]]; then
        COMPREPLY=($(compgen -W "@ORDER_BY@" -- "$cur"))
        return 0
    fi
    local params=""
    case ${path%/} in
        @PARAMETER_CASES@
    esac
    COMPREPLY=($(compgen -W "$params" -- "$cur"))
    return 0
}

_vmctl_vm_paths() {
    case $1 in
        @VM_PATH_CASES@
    esac
}

complete -F _vmctl vmctl
"""


def _words(words: tuple[str, ...] | list[str]) -> str:
    return " ".join(words)


def bash_script() -> str:
    """The completion script, its word lists filled in from vmctl's own tables."""
    methods: dict[str, list[str]] = {}
    for action, method in METHODS.items():
        methods.setdefault(method, []).append(action)
    method_cases = "\n        ".join(
        f"{'|'.join(actions)}) method={method} ;;" for method, actions in methods.items())
    parameter_cases = "\n        ".join(
        f"{'' if suffix.startswith('/') else '*/'}{suffix}) params=\""
        f"{_words([f'-{name}' for name in names])}\" ;;"
        for suffix, names in PARAMETERS.items())
    vm_path_cases = "\n        ".join(
        f"{method}) echo \"{_words(paths)}\" ;;" for method, paths in VM_PATHS.items())
    order_by = [f for column in TABLE_COLUMNS if column != "tasks" for f in (column, f"-{column}")]
    filled = {
        "@VALUE_OPTIONS@": _words(VALUE_OPTIONS),
        "@EVENTS_OPTIONS@": _words(EVENTS_OPTIONS),
        "@OPTIONS@": _words(OPTIONS),
        "@ACTIONS@": _words(list(METHODS)),
        "@METHOD_CASES@": method_cases,
        "@PARAMETER_CASES@": parameter_cases,
        "@VM_PATH_CASES@": vm_path_cases,
        "@ORDER_BY@": _words(order_by),
    }
    script = _SCRIPT
    for key, value in filled.items():
        script = script.replace(key, value)
    return script
