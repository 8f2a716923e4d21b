#!/usr/bin/env bash
# The manual pages in docs/man: none has drifted from the code, and each lints clean.
#
# Drift, with every list taken from the code, never written down here:
# - every command that `floodgatectl --help` lists (and daemon/ctl.c or lib/ctl.c spells
#   as a string) is an entry of floodgatectl.8's COMMANDS;
# - every long option of `floodgatectl --help` and `floodgated --help` is in its page;
# - every key lib/config.c accepts, and every top-level key of conf/floodgate.yml, is an
#   `.It Ic KEY` entry of floodgate.yml.5.
# Lint: `mandoc -T lint -W warning`, or without mandoc `groff -mdoc -ww -z`; any message
# fails. Exit 77 (skip) only when neither linter exists, after the drift checks passed.
set -euo pipefail
build="${FG_BUILD_DIR:?}"
src="${FG_SOURCE_DIR:?}"
man="$src/docs/man"
pages=(floodgated.8 floodgatectl.8 floodgate.yml.5)
failed=0
fail() {
    echo "FAIL: $*" >&2
    failed=1
}

for p in "${pages[@]}"; do
    [ -f "$man/$p" ] || { echo "FAIL: $man/$p missing" >&2; exit 1; }
    # .Dt names the page and its section: floodgate.yml.5 -> "FLOODGATE.YML 5"
    want=".Dt $(echo "${p%.*}" | tr '[:lower:]' '[:upper:]') ${p##*.}"
    grep -qxF "$want" "$man/$p" || fail "$p: no '$want' line"
done

# The text of one section (.Sh NAME up to the next .Sh) of a page.
section() {
    awk -v s=".Sh $2" '$0 == s { on = 1; next } /^\.Sh / { on = 0 } on' "$man/$1"
}

# Long options a program's --help lists must appear in its page as Fl arguments.
check_options() { # program page
    local opts o
    opts=$("$build/$1" --help | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u)
    [ -n "$opts" ] || fail "$1 --help lists no long option"
    for o in $opts; do
        grep -qE "^\..*Fl .*-${o#--}( |$)" "$man/$2" || fail "$2 does not document $o"
    done
    echo "ok $2: options $(echo $opts)"
}

# floodgated
[ -x "$build/floodgated" ] || { echo "FAIL: $build/floodgated not built" >&2; exit 1; }
check_options floodgated floodgated.8

# floodgatectl: the commands its --help lists. The first word of each line, once the
# program's name and [optional] parts are removed, is a candidate; it is a command when
# the code spells it as a string literal, which leaves out words of descriptions.
if [ -f "$src/daemon/ctl.c" ]; then
    [ -x "$build/floodgatectl" ] || { echo "FAIL: $build/floodgatectl not built" >&2; exit 1; }
    help=$("$build/floodgatectl" --help)
    cmds=()
    for w in $(printf '%s\n' "$help" | sed -e 's/\[[^]]*\]//g' -e 's/^[[:space:]]*usage:[[:space:]]*//' \
        -e 's/^[[:space:]]*floodgatectl[[:space:]]*//' | awk '{ print $1 }' |
        grep -E '^[a-z][a-z0-9]*(-[a-z0-9]+)*$' | sort -u); do
        if grep -qF "\"$w\"" "$src/daemon/ctl.c" "$src/lib/ctl.c" 2>/dev/null; then
            cmds+=("$w")
        fi
    done
    for c in status release; do
        [[ " ${cmds[*]} " == *" $c "* ]] ||
            fail "'$c' not found among floodgatectl --help's commands (${cmds[*]}): has its format changed?"
    done
    # the entries of COMMANDS: ".It Cm NAME ...", or ".Cm NAME ..." right after ".It Xo"
    entries=$(section floodgatectl.8 COMMANDS | awk '
        xo && $1 == ".Cm" { print $2 } { xo = 0 }
        $1 == ".It" && $2 == "Cm" { print $3 }
        $1 == ".It" && $2 == "Xo" { xo = 1 }')
    for c in "${cmds[@]}"; do
        grep -qxF "$c" <<<"$entries" || fail "floodgatectl.8 COMMANDS has no entry for '$c'"
    done
    echo "ok floodgatectl.8: commands ${cmds[*]}"
    check_options floodgatectl floodgatectl.8
fi

# floodgate.yml: the keys the parser compares (config_pair_fn handlers name their key
# argument "key"), the names of its key tables (entries with an offsetof() into a config
# struct, or indexed by a key enum: [CONFIG_DEST_URL] = { "url", ...), and the example's
# top-level keys.
keys=$({
    grep -oE 'strcmp\(key, "[a-z][a-z0-9_]*"\)' "$src/lib/config.c" | sed 's/.*"\(.*\)".*/\1/'
    grep -E '\{ *"[a-z][a-z0-9_]*",.*offsetof\(struct config' "$src/lib/config.c" |
        sed 's/[^"]*"\([^"]*\)".*/\1/'
    grep -oE '\[[A-Z][A-Z0-9_]*\] *= *\{ *"[a-z][a-z0-9_]*",' "$src/lib/config.c" |
        sed 's/[^"]*"\([^"]*\)".*/\1/'
    grep -oE '^[a-z][a-z0-9_]*:' "$src/conf/floodgate.yml" | tr -d :
} | sort -u)
for k in mode rules actions freeze_batch log_file; do
    grep -qxF "$k" <<<"$keys" ||
        fail "key '$k' not found in lib/config.c or conf/floodgate.yml: has the parser changed shape?"
done
nkeys=0
for k in $keys; do
    nkeys=$((nkeys + 1))
    grep -qE "^\.It Ic $k( |$)" "$man/floodgate.yml.5" || fail "floodgate.yml.5 does not document '$k'"
done
echo "ok floodgate.yml.5: $nkeys keys"

[ "$failed" -eq 0 ] || exit 1

# The page heads and feet name floodgate, never "BSD" (groff's mdoc default without a system
# named; mandoc's without .Os is the host's), with whichever formatter is here.
for p in "${pages[@]}"; do
    for fmt in "mandoc -T ascii" "groff -mdoc -T ascii"; do
        command -v "${fmt%% *}" >/dev/null || continue
        out=$($fmt "$man/$p" 2>/dev/null | sed -n '1p;$p')
        case "$out" in
        *BSD*) fail "$p: ${fmt%% *} prints BSD: $out" ;;
        *floodgate*) ;;
        *) fail "$p: ${fmt%% *} does not name floodgate: $out" ;;
        esac
    done
done

if command -v mandoc >/dev/null; then
    for p in "${pages[@]}"; do
        out=$(mandoc -T lint -W warning "$man/$p" 2>&1) && [ -z "$out" ] ||
            fail "mandoc -T lint: $p: ${out:-exit status $?}"
    done
    linter=mandoc
elif command -v groff >/dev/null; then
    for p in "${pages[@]}"; do
        out=$(groff -mdoc -ww -z "$man/$p" 2>&1) && [ -z "$out" ] ||
            fail "groff -mdoc -ww: $p: ${out:-exit status $?}"
    done
    linter=groff
else
    echo "skip: neither mandoc nor groff; pages not linted"
    exit 77
fi
[ "$failed" -eq 0 ] || exit 1
echo "ok lint ($linter): ${pages[*]}"
