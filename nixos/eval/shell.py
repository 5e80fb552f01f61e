"""The commands a bash snippet runs, for checking them against a PATH.

Enough of bash for the test scripts and helper scripts of this repository:
quoting, `$(...)` and backticks (parsed recursively), pipelines and lists,
redirections, assignments, `if`/`while`/`for`/`case`, functions, and the
wrappers that run another command (`exec`, `runuser -u USER --`, `env`,
`timeout`, `xargs`...). It does not evaluate anything; a command word that
starts with `$` is dynamic and skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BUILTINS = set(
    """
    . : [ alias bg bind break builtin caller cd command compgen complete continue
    declare dirs disown echo enable eval exec exit export false fc fg getopts hash
    help history jobs kill let local logout mapfile popd printf pushd pwd read
    readarray readonly return set shift shopt source suspend test times trap true
    type typeset ulimit umask unalias unset wait
    """.split()
)
KEYWORDS = set("if then else elif fi do done while until for in case esac { } ! [[ ]] function select time".split())

OPERATORS = ["&&", "||", ";;", "|&", ";", "|", "&", "(", ")", "\n"]
REDIRECT = re.compile(r"^(\d*|&)(>>|>&|<&|>|<<<|<<|<)(.*)$")


@dataclass
class Command:
    """One simple command: its words (quotes removed) and who runs it."""

    words: list[str]
    user: str | None = None


def _read_subst(text: str, i: int) -> tuple[str, int]:
    """text[i:] starts after `$(`; returns the inner text and the index after `)`."""
    depth, j, quote = 1, i, None
    while j < len(text):
        c = text[j]
        if quote:
            if c == "\\" and quote == '"':
                j += 2
                continue
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "\\":
            j += 2
            continue
        elif text.startswith("$(", j):
            depth += 1
            j += 2
            continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[i:j], j + 1
        j += 1
    raise ValueError(f"unclosed $( in: {text!r}")


def tokenize(text: str) -> list[tuple[str, str, list[str]]]:
    """Tokens as (kind, value, substitutions): kind is 'word' or 'op'."""
    tokens: list[tuple[str, str, list[str]]] = []
    i, n = 0, len(text)
    word, in_word, subs = [], False, []

    def end_word():
        nonlocal word, in_word, subs
        if in_word:
            tokens.append(("word", "".join(word), subs))
        word, in_word, subs = [], False, []

    while i < n:
        c = text[i]
        if c == "#" and not in_word:
            while i < n and text[i] != "\n":
                i += 1
            continue
        if c in " \t":
            end_word()
            i += 1
            continue
        if c == "\\" and i + 1 < n:
            if text[i + 1] == "\n":
                i += 2
                continue
            word.append(text[i + 1])
            in_word = True
            i += 2
            continue
        if c == "'":
            j = text.index("'", i + 1)
            word.append(text[i + 1 : j])
            in_word = True
            i = j + 1
            continue
        if c == '"':
            j = i + 1
            while text[j] != '"':
                if text[j] == "\\":
                    word.append(text[j + 1])
                    j += 2
                    continue
                if text.startswith("$(", j):
                    inner, j = _read_subst(text, j + 2)
                    subs.append(inner)
                    word.append("$(...)")
                    continue
                if text[j] == "`":
                    k = text.index("`", j + 1)
                    subs.append(text[j + 1 : k])
                    word.append("$(...)")
                    j = k + 1
                    continue
                word.append(text[j])
                j += 1
            in_word = True
            i = j + 1
            continue
        if text.startswith("$(", i) and not text.startswith("$((", i):
            inner, i = _read_subst(text, i + 2)
            subs.append(inner)
            word.append("$(...)")
            in_word = True
            continue
        if c == "`":
            k = text.index("`", i + 1)
            subs.append(text[i + 1 : k])
            word.append("$(...)")
            in_word = True
            i = k + 1
            continue
        if text.startswith("$((", i):
            k = text.index("))", i)
            word.append(text[i : k + 2])
            in_word = True
            i = k + 2
            continue
        if c == "$" and i + 1 < n and text[i + 1] == "{":
            k = text.index("}", i)
            word.append(text[i : k + 1])
            in_word = True
            i = k + 1
            continue
        op = next((o for o in OPERATORS if text.startswith(o, i)), None)
        # `2>&1`, `&>` and `>&` are redirections, not the `&` operator.
        if op == "&" and (text.startswith("&>", i) or (word and word[-1].endswith(">"))):
            op = None
        if op:
            end_word()
            tokens.append(("op", op, []))
            i += len(op)
            continue
        word.append(c)
        in_word = True
        i += 1
    end_word()
    return tokens


WRAPPERS_SIMPLE = {"exec", "command", "nohup", "nice", "builtin", "stdbuf"}


def _strip_wrapper(words: list[str], user: str | None) -> tuple[list[str], str | None, str | None]:
    """If words[0] runs another command, returns (that command's words, its user, the wrapper)."""
    head = words[0]
    if head in WRAPPERS_SIMPLE:
        rest = words[1:]
        while rest and rest[0].startswith("-"):
            rest = rest[1:]
        return rest, user, head
    if head in ("runuser", "sudo"):
        rest, new_user = words[1:], "root"
        while rest and rest[0].startswith("-"):
            if rest[0] == "--":
                rest = rest[1:]
                break
            if rest[0] in ("-u", "--user"):
                new_user = rest[1]
                rest = rest[2:]
                continue
            rest = rest[1:]
        return rest, new_user, head
    if head == "env":
        rest = words[1:]
        while rest and (rest[0].startswith("-") or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", rest[0])):
            rest = rest[1:]
        return rest, user, head
    if head == "timeout":
        rest = words[1:]
        while rest and rest[0].startswith("-"):
            rest = rest[1:]
        return rest[1:], user, head
    if head == "xargs":
        rest = words[1:]
        while rest and rest[0].startswith("-"):
            rest = rest[2:] if rest[0] in ("-n", "-I", "-P", "-d", "-L") else rest[1:]
        return rest, user, head
    return [], user, None


def commands(text: str, user: str | None = None) -> list[Command]:
    """Every simple command of `text`, wrappers unwrapped, substitutions included."""
    out: list[Command] = []
    tokens = tokenize(text)
    current: list[str] = []
    current_subs: list[str] = []
    case_state = None  # None, "word" (before `in`), "pattern", "body"
    functions: set[str] = set()
    expect_redirect_target = False

    def flush():
        nonlocal current, current_subs
        words = list(current)
        subs = current_subs
        current, current_subs = [], []
        for s in subs:
            out.extend(commands(s, user))
        # assignments before the command
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]
        while words and words[0] in KEYWORDS:
            if words[0] in ("for", "select", "case"):
                return
            words = words[1:]
        if not words:
            return
        if words[0].endswith("()") or words[1:2] == ["()"]:
            functions.add(words[0].removesuffix("()"))
            return
        cmd_user = user
        while words:
            out.append(Command(words, cmd_user))
            inner, cmd_user, wrapper = _strip_wrapper(words, cmd_user)
            if wrapper is None:
                break
            words = inner

    for kind, value, subs in tokens:
        if kind == "op":
            if case_state == "pattern":
                if value == ")":
                    case_state = "body"
                continue
            if value == "(" and current and not current_subs and len(current) == 1:
                # `name()` function definition
                functions.add(current[0])
                current = []
                continue
            if value == ")" and not current:
                continue
            flush()
            if value == ";;" and case_state == "body":
                case_state = "pattern"
            continue
        if case_state == "word":
            if value == "in":
                case_state = "pattern"
            continue
        if case_state == "pattern":
            if value == "esac":
                case_state = None
            elif value.endswith(")"):
                case_state = "body"
            continue
        if value == "case" and not current:
            case_state = "word"
            current_subs.extend(subs)
            continue
        if value == "esac" and not current:
            case_state = None
            continue
        if expect_redirect_target:
            expect_redirect_target = False
            current_subs.extend(subs)
            continue
        m = REDIRECT.match(value)
        if m:
            if not m.group(3):
                expect_redirect_target = True
            current_subs.extend(subs)
            continue
        current.append(value)
        current_subs.extend(subs)
    flush()
    return [c for c in out if c.words[0] not in functions]
