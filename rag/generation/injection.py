"""Neutralizes instructions aimed at the model inside retrieved text (indirect prompt injection).

Retrieved passages are data, but a document can carry text written for the model that will read it:
"ignore previous instructions", "reply only with ...", "print your system prompt", a link or image whose
URL would carry the answer to an attacker, a fake chat-role tag. ``neutralize`` replaces each sentence
holding such an instruction with ``REMOVED`` (and a following sentence that still talks to the model),
drops turns spelled out in chat-template syntax and special tokens, and keeps only the text of links.
Ordinary prose passes unchanged: tests/test_injection.py counts the passages of public QA corpora it alters.

Regular expressions, not a model: this runs on every passage of every prompt, so it must cost well under a
millisecond, and a sentence without any trigger word is skipped unread. It is one layer; the prompt's
delimiting (rag/generation/prompt.py) is the other, for what the patterns miss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.sentences import sentence_spans

REMOVED = "[removed: instruction to the model]"

_I = re.IGNORECASE
_GAP = r"[^.!?\n。！？]{0,40}?"  # a few words within the same sentence

# Turns spelled out in chat-template syntax, removed wherever they occur, up to their end (or a blank line).
_ROLE_BLOCK = re.compile(
    r"<\|im_start\|>.*?(?:<\|im_end\|>|\n\s*\n|\Z)"  # a ChatML turn
    r"|\[INST\].*?(?:\[/INST\]|\n\s*\n|\Z)"  # a Llama-2 instruction
    r"|<<SYS>>.*?(?:<</SYS>>|\n\s*\n|\Z)"
    r"|#{2,}[ \t]*(?:instruction|system|new instructions?)[ \t]*:.*?"  # Alpaca, up to its response header
    r"(?:#{2,}[ \t]*(?:response|output|answer)[ \t]*:?|\n\s*\n|\Z)"
    r"|^[ \t]*(?:system|assistant|developer)[ \t]*:[^\n]*",  # "System: ..." on a line of its own
    re.DOTALL | re.MULTILINE | _I,
)
# Chat-template special tokens (<|im_start|>, <|eot_id|>, ...): llama.cpp tokenizes them as the real control
# tokens, so a document that keeps one could open a turn of its own.
_SPECIAL_TOKEN = re.compile(
    r"<\|[^|<>\n]{1,40}\|>|</?(?:system|assistant|im_start|im_end|instructions?)>"
    r"|\[/?(?:INST|SYS|SYSTEM)\]|<</?SYS>>|^[ \t]*#{2,}[ \t]*response:?[ \t]*$",
    _I | re.MULTILINE,
)
# Links keep their text and lose their target: a URL the model copies into its answer can carry the answer
# (or the prompt) to whoever owns it, and a client fetches an image link without a click.
_MD_IMAGE = re.compile(r"!\[([^\]\n]{0,200})\]\([^)\n]{0,2000}\)")
_MD_LINK = re.compile(r"\[([^\]\n]{1,200})\]\((?:https?:|www\.|//)[^)\n]{0,2000}\)", _I)
_HTML_IMG = re.compile(r"<img\b[^>]{0,2000}>", _I)
_HTML_LINK = re.compile(r"<a\b[^>]{0,2000}>(.*?)</a>", _I | re.DOTALL)
# A bare URL keeps its host and path but loses a query string holding a template to fill in ({answer}).
_URL_TEMPLATE = re.compile(r"(https?://[^\s?#)\"'<>]+)[?#][^\s)\"'<>]*(?:\{|%7B|\$\{?|<|\[)[^\s)\"'<>]*", _I)

# Sentence-level triggers: a sentence matching one is an instruction to the model. Each names the model's
# own situation (its instructions, its answer, its prompt, the model itself), which ordinary prose rarely does.
_MODEL = r"(?:AI|LLM|language model|chat ?bot|assistant|bot|model|GPT|agent|summari[sz](?:er|ation tool))s?\b"
_NOT_A_JOB = r"(?!\s+(?:manager|coach|director|editor|professor|secretary|principal|referee|to\b))"
_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # "ignore all previous instructions", "disregard the prior rules you were given"
    ("override", (
        r"\b(?:ignore|disregard|forget|override|overrule|bypass|discard)\b" + _GAP
        + r"\b(?:previous|prior|preceding|above|earlier|original|initial|system|all|any|your|existing)\b" + _GAP
        + r"\b(?:instructions?|prompts?|rules|directions|directives|guidelines|guidance|commands?|context|constraints)\b",
        (r"\b(?:ignore|disregard|forget)\s+(?:everything|anything|all)\s+"
        r"(?:above|before|else|previously|you(?:'ve| have| were)? (?:been )?told)\b"),
        r"\b(?:do not|don't|never)\s+(?:follow|obey)\s+(?:the|your|any)\s+(?:previous|prior|original|system|above)\b",
        r"\b(?:instructions?|rules|prompt)\b" + _GAP + r"\b(?:no longer apply|(?:is|are) (?:now )?(?:void|obsolete))\b",
    )),
    # a new persona or task
    ("persona", (
        (r"\byou are now (?:an?\s+|the\s+)?(?:\w+\s+){0,2}"
        r"(?:AI|assistant|bot|model|chatbot|DAN|persona|character|free|unrestricted|jailbroken|no longer)\b"),
        r"\bfrom now on,?\s+(?:answer|respond|reply|say|always|you (?:must|will|are))\b",
        r"\byour (?:new |real |actual |only )(?:task|role|instructions?|goal|job|purpose)\b|\byour task has changed\b",
        r"\bnew (?:instructions?|rules|task|system prompt)\s*(?::|follow)",
        r"\b(?:jailbreak|DAN) mode\b|\bpretend (?:that )?you are\b",
    )),
    # addressed to the model
    ("address", (
        r"\b(?:note|message|instructions?|attention|notice|reminder|directive)s?\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?"
        + _MODEL + _NOT_A_JOB,
        r"\b(?:if|when)\s+you\s+are\s+(?:an?\s+)?(?:AI|LLM|language model|chat ?bot|assistant|bot)\b",
        r"\b(?:dear|hey|hello|hi|attention)[,!]?\s+(?:AI|LLM|assistant|chat ?bot|GPT)\b" + _NOT_A_JOB,
        r"^\W{0,3}(?:AI|LLM|assistants?|chat ?bots?|system|developer)\s*[:,]\s+(?!\d)",
        (r"\b(?:assistants?|tools|models?|bots?|AIs?|LLMs?)\s+(?:that|which|who)\s+(?:read|process|summari[sz]e)\s+"
        r"(?:this|it|these)\b"),
    )),
    # reveal the prompt
    ("leak", (
        r"\b(?:reveal|print|show|output|repeat|display|disclose|leak|dump|recite|echo|share|quote|write out"
        r"|tell (?:me|us|the user))\b" + _GAP
        + r"(?:\bsystem (?:prompt|message)|\b(?:initial|hidden|original|secret) (?:prompt|instructions|rules)"
        r"|\b(?:your|the) (?:instructions|prompt|rules|configuration|guidelines)\b"
        r"|\b(?:configuration|instructions?) (?:message )?you\b"
        r"|\b(?:text|words|everything|messages?|instructions) (?:above|before|that appears? (?:above|before))\b"
        r"|\bverbatim\b|\bword for word\b)",
        r"\bwhat are your (?:instructions|rules)\b",
        r"\bsystem prompt\b" + _GAP + r"\b(?:url|link|append|encode)",
    )),
    # answer with a fixed string
    ("fixed_answer", (
        r"\b(?:answer|respond|reply)(?:\s+\w+){0,5}?\s+(?:only|solely|just|exactly|simply|always)\s+(?:with|by|using)\b",
        r"\b(?:answer|respond|reply)\s+(?:with|using)\s+(?:exactly|only|the (?:single )?(?:word|phrase|string|code|text))\b",
        r"(?:^|[:;(]\s*)(?:please\s+|now\s+|instead,?\s+|always\s+)?(?:answer|respond|reply)\s+(?:with|by saying)\b",
        r"\banswer every\b",
        (r"\b(?:your|the|every|each|any|all)\s+(?:final\s+)?(?:answers?|responses?|replies|outputs?)"
        r"(?:\s+(?:to|that|which)\s+(?:\w+\s+){1,5})?\s+(?:must|should|shall|has to|have to|needs? to|will|is to)\s+"
        r"(?:always\s+)?(?:be|contain|include|start|begin|end|read|say|consist)\b"),
        (r"\b(?:correct|right|official|only acceptable|only valid|expected)\s+(?:answer|response|output|reply)\s+"
        r"(?:to\s+(?:any|every|all|each|this)\b|is\b)"),
        r"\b(?:regardless of|no matter)\s+(?:the|what)\s+(?:question|user|is asked)",
        r"\b(?:if|when)\s+(?:the user|a user|anyone|someone|you are|you're)\s+(?:asks?|asked|questions?)\b",
        (r"\b(?:to|for)\s+(?:any|every|all|each)\s+(?:question|query|queries|request|prompt)s?\b.{0,40}"
        r"\b(?:answer|respond|reply|say|output)"),
        r"\b(?:say|output|print|answer|respond|reply)\s+(?:only|exactly|just|simply|nothing but)\b",
        (r"\b(?:say|output|print|write|type)\b.{0,40}"
        r"(?:\band nothing else|\band stop|\bas your (?:whole |entire |only )?(?:answer|response|reply|output))\b"),
        r"\b(?:say|output|print)\s+['\"“‘]",
        r"\binstead of (?:the|a) (?:real|actual|correct) answer\b",
        r"\b(?:do not|don't|should not|shouldn't|must not|never)\s+answer the (?:question|user)\b",
        (r"\byou (?:must|should|will|shall|have to|need to|are required to)\s+(?:now\s+|always\s+|only\s+)?"
        r"(?:answer|respond|reply|say|output|ignore|reveal|repeat)\b"),
    )),
    # exfiltration: put a link or an image into the answer (a verb, a link word, and the answer or the model)
    ("exfiltration", (
        (r"^(?=.*\b(?:include|append|add|insert|embed|render|put|attach|copy|cite|show|display|end|contain)s?\b)"
        r"(?=.*(?:\blinks?\b|\burl\b|\bimages?\b|\bimg\b|\bmarkdown\b|\bhyperlink|\bpixel\b|https?://|!\[))"
        r"(?=.*(?:\byour?\b|\bassistant|\b(?:every|each|any) (?:answer|response|reply)|\bthe (?:answer|reply|output)\b))"),
    )),
    # Chinese: ignore the instructions above, reveal the system prompt, you are now, reply only, add a link
    ("override", (
        (r"(?:忽略|无视|忽视|不要理会|不要遵守|忘记|忘掉)掉?你?"
        r"(?:之前|以前|先前|前面|上面|上述|以上|此前|所有|全部|一切|原有|原来|系统)"
        r"[^。！？\n]{0,8}(?:指令|指示|说明|提示|规则|要求|命令|设定)"),
    )),
    ("leak", (
        (r"(?:输出|透露|显示|告诉我|打印|重复|复述|泄露|展示|公开|说出)[^。！？\n]{0,12}"
        r"(?:系统提示|提示词|你的指令|初始指令|系统指令)"),
    )),
    ("persona", (r"你现在是|从现在(?:开始|起)，?你",)),
    ("fixed_answer", (
        r"(?:^|[，,：:；;\s]|请|你|必须)(?:只|仅)能?(?:回答|回复|输出)(?!了)",
        r"(?:回答|回复|答案)(?:必须|只能)(?:是|为)|无论用户问什么",
    )),
    ("exfiltration", (r"(?:加上|附上|插入|包含)[^。！？\n]{0,10}(?:链接|图片|网址)",)),
)  # fmt: skip
_TRIGGERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile("|".join(alternatives), _I)) for kind, alternatives in _RULES
)
# The fast path: every trigger contains one of these words, so a sentence without any is skipped unread
# (most sentences; the triggers cost about a microsecond per character). tests/test_injection.py checks
# that skipping changes nothing.
_HEADS = re.compile(
    r"\b(?:ignor|disregard|forget|overr|bypass|discard|(?:do not|don't|never) (?:follow|obey)|instruction|rules"
    r"|prompt|you are now|from now on|your (?:new|real|actual|only|task)|new (?:instruction|rules|task|system)"
    r"|jailbreak|DAN mode|pretend|AIs?\b|LLMs?\b|language model|chat ?bots?\b|assistant|bots?\b|models?\b|GPT"
    r"|agents?\b|summari[sz]|tools\b|(?:system|developer)\s*[:,]|configuration|guidelines"
    r"|(?:text|words|everything|messages?) (?:above|before|that appear)|verbatim|word for word|what are your"
    r"|answer|respond|response|repl(?:y|ies)\b|outputs?\b|regardless|no matter"
    r"|(?:the user|a user|anyone|someone|you are|you're) (?:ask|question)|(?:any|every|all|each) (?:question|quer|request)"
    r"|say|print|nothing else|and stop|as your|instead of|you (?:must|should|will|shall|have to|need to|are required to)"
    r"|links?\b|url|image|img|markdown|hyperlink|pixel|https?://)"
    r"|!\[|忽略|无视|忽视|不要理会|不要遵守|忘记|忘掉|系统提示|提示词|你的指令|初始指令|系统指令|你现在是|从现在"
    r"|只回|只输|仅回|仅输|答案|回答|回复|无论用户问什么|链接|图片|网址",
    _I,
)
# After an instruction, a following sentence that still talks to the model is part of it ("Ignore the
# above. Your answer is X."): it goes too, and the one after it is checked in turn.
_FOLLOW_UP = re.compile(
    r"\byou(?:r|rs)?\b"
    r"|^\W*(?:(?:then|and|also|now|instead|only|just|simply)\W+)?"
    r"(?:say|print|output|answer|respond|reply|write|return|include|append|repeat|reveal|do not|don't|never)\b"
    r"|\b(?:the|your) (?:answer|response|reply|output)s? (?:is|are|should|must|will)\b"
    r"|你|回答|回复|输出",
    _I,
)


@dataclass(frozen=True)
class Finding:
    """One instruction found: its kind (the rule that fired, or "follow_up") and its sentence's span."""

    kind: str
    start: int
    end: int


def neutralize(text: str) -> str:
    """``text`` with every instruction to the model replaced by ``REMOVED`` (a run of them by one), then
    special tokens and link targets stripped from what is left. Ordinary text comes back unchanged."""
    text = strip_role_blocks(text)
    findings = find_instructions(text)
    if findings:
        pieces: list[str] = []
        position = 0
        for finding in findings:
            gap = text[position : finding.start]
            position = finding.end
            if pieces and pieces[-1] == REMOVED and not gap.strip():
                continue  # adjacent to the marker just written
            pieces.extend((gap, REMOVED))
        pieces.append(text[position:])
        text = "".join(pieces)
    return strip_structure(text)


def find_instructions(text: str) -> list[Finding]:
    """The sentences of ``text`` that are instructions to the model, with their follow-ups."""
    if not _HEADS.search(text):
        return []
    findings: list[Finding] = []
    tainted = False
    for start, end in sentence_spans(text):
        sentence = text[start:end]
        if REMOVED in sentence:  # next to a removed role block: the rest is judged on its own
            sentence = sentence.replace(REMOVED, " ")
            tainted = True
            if not sentence.strip():
                continue
        kind = _trigger(sentence)
        if kind is None and tainted and _FOLLOW_UP.search(sentence):
            kind = "follow_up"
        tainted = kind is not None
        if kind is not None:
            findings.append(Finding(kind, start, end))
    return findings


def _trigger(sentence: str) -> str | None:
    if not _HEADS.search(sentence):
        return None
    return next((kind for kind, pattern in _TRIGGERS if pattern.search(sentence)), None)


def strip_role_blocks(text: str) -> str:
    """Turns spelled out in chat-template syntax (a ChatML turn, [INST] ... [/INST], "System: ...") removed."""
    if any(mark in text for mark in ("<|", "[INST", "<<SYS", "##", ":")):
        return _ROLE_BLOCK.sub(f" {REMOVED} ", text)
    return text


def strip_structure(text: str) -> str:
    """Special tokens removed, links reduced to their text, URL templates cut off."""
    if "<" in text or "[" in text or "#" in text:
        text = _SPECIAL_TOKEN.sub(" ", text)
    if "](" in text:
        text = _MD_IMAGE.sub(lambda m: m.group(1), text)
        text = _MD_LINK.sub(lambda m: m.group(1), text)
    if "<" in text:
        text = _HTML_IMG.sub(" ", text)
        text = _HTML_LINK.sub(lambda m: m.group(1), text)
    if "://" in text:
        text = _URL_TEMPLATE.sub(lambda m: m.group(1), text)
    return text
