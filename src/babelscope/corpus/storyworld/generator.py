"""Plan a story from (seed, index) and render it in English and Arabic with its ground-truth labels.

A plan is a list of pieces (sentences and quotes) drawn from the templates; it never depends on the languages,
style or output order asked for, so the English record of story i is the same in every run and story i is the
same in a run of 100 stories and of 1000.

Ground truth by construction: rendering wraps every name, quote and dialogue tag in private-use marker
characters (never in a template or a name); `render` strips them and records where each one was, as the
record's character `spans` (see `render`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

from babelscope.corpus.storyworld import templates as T
from babelscope.corpus.storyworld.names import ARABIC_NAMES, ENGLISH_NAMES, Name
from babelscope.corpus.storyworld.vocab import ADJECTIVES, GREY_DAY, NOUNS, VERBS, Adjective, Noun, Verb

# Table 6 of the Arabic TinyStories study: each feature is drawn independently with this probability.
FEATURES = {"Dialogue": 0.6, "BadEnding": 0.3, "Conflict": 0.1, "MoralValue": 0.1, "Foreshadowing": 0.1,
            "Twist": 0.3}
LANGS = ("en", "ar")
STYLES = ("translated", "native")
MIN_WORDS, MAX_WORDS = 80, 250
TARGET_WORDS = (100, 190)  # each story aims at an English length drawn from this range
FRIEND_RATE = 0.7  # share of stories with a named friend besides the hero (always one in a Conflict story)

_ROLES = "HFPNGBSA"
_MARK = re.compile(r"\[([HFPNGBSA]):([^|\]]*)\|([^\]]*)\]")
_BY_GENDER = {(origin, g): [n for n in names if n.gender == g]
              for origin, names in (("english", ENGLISH_NAMES), ("arabic", ARABIC_NAMES)) for g in "mf"}
_NOUNS_BY_KIND = {k: [n for n in NOUNS if n.kind == k] for k in "tfaps"}
_BODY = set(T.ENCOUNTERS) | set(T.FALLBACKS) | set(T.MIDDLES)

# Markers around what `render` reports as spans: a name, a quote's inner text, a tag after / before its quote.
_NAME, _QUOTE, _TAG_AFTER, _TAG_BEFORE = ("\ue000", "\ue001"), ("\ue002", "\ue003"), ("\ue004", "\ue005"), \
    ("\ue006", "\ue007")
_MARKS = re.compile("[\ue000-\ue007]")


def _wrap(text: str, mark: tuple[str, str]) -> str:
    return mark[0] + text + mark[1]


@cache
def _resolve(template: str, genders: str) -> str:
    """Apply the gender choices `[R:masc|fem]` for the roles in `genders` (one letter per role of _ROLES)."""
    return _MARK.sub(lambda m: m[2] if genders[_ROLES.index(m[1])] == "m" else m[3], template)


class Piece(NamedTuple):
    """A sentence (`line`) or a quote of the plan, the paragraph it belongs to and whether it may be dropped."""

    para: int
    optional: bool
    line: T.Line | None = None
    quote: T.Quote | None = None
    speaker: str = ""
    addressee: str = ""
    before: bool = False  # English tag before the quote: Tim said, "..."
    inverted: bool = True  # English tag after the quote as `said Tim` rather than `Tim said`
    speech: int = 0  # which speech verb of the quote's kind
    group: int = -1  # the exchange a quote belongs to; an exchange is dropped whole


@dataclass
class Story:
    """Everything drawn for one story; rendering it needs only a language and a style."""

    seed: int | str
    index: int
    features: list[str]
    gender: dict[str, str]  # role -> "m" / "f"
    hero: tuple[Name, Name]  # (English-origin name, Arabic-origin name)
    friend: tuple[Name, Name] | None
    noun: Noun
    verb: Verb
    adjective: Adjective
    target: str  # what the adjective describes: noun, hero, day or fallback
    fallback: Noun | None
    pieces: list[Piece] = field(default_factory=list)
    sentences: dict[str, list[str]] = field(default_factory=dict)  # rendered pieces: English, translated Arabic
    codes: dict[tuple[str, str], str] = field(default_factory=dict)  # gender codes by (speaker, addressee)


def _pick(rng: random.Random, options: Iterable[T.Line], kind: str, friend: bool) -> T.Line:
    fits = [o for o in options if kind in o.kinds and (friend or not o.friend)]
    return rng.choice(fits)


def _pick_name(rng: random.Random, origin: str, gender: str, avoid: Name | None = None) -> Name:
    pool = _BY_GENDER[origin, gender]
    while True:
        name = rng.choice(pool)
        if name != avoid:
            return name


def _exchange_pieces(rng: random.Random, ex: T.Exchange, para: int, optional: bool, friend: bool,
                     before_rate: float, group: int) -> list[Piece]:
    pieces = []
    for q in ex.quotes:
        speaker, addressee = (("F" if friend else "P") if r == "O" else r for r in (q.speaker, q.addressee))
        # Draw every number whatever the rate, so that the rate changes tag order and nothing else.
        before, inverted = rng.random() < before_rate, rng.random() < 0.5
        pieces.append(Piece(para, optional, quote=q, speaker=speaker, addressee=addressee, before=before,
                            inverted=inverted, speech=rng.randrange(len(T.SPEECH[q.speech])), group=group))
    return pieces


def plan_story(seed: int | str, index: int, dialogue_before_rate: float = 0.2) -> Story:
    """Draw story `index` of run `seed`: features, cast, words and the template of every part."""
    rng = random.Random(f"{seed}:{index}")
    story = _draw(rng, seed, index)
    middles = _outline(rng, story, dialogue_before_rate)
    _fit_length(rng, story, middles, rng.randint(*TARGET_WORDS))
    return story


def _draw(rng: random.Random, seed: int | str, index: int) -> Story:
    """The features, the characters and the three words, and what the adjective will describe."""
    features = [f for f, p in FEATURES.items() if rng.random() < p]
    has = set(features)
    gender = {"H": rng.choice("mf")}
    hero = (_pick_name(rng, "english", gender["H"]), _pick_name(rng, "arabic", gender["H"]))
    has_friend = rng.random() < FRIEND_RATE or "Conflict" in has
    friend = None
    if has_friend:
        gender["F"] = rng.choice("mf")
        friend = (_pick_name(rng, "english", gender["F"], hero[0]), _pick_name(rng, "arabic", gender["F"], hero[1]))
    gender["P"] = rng.choice("fm")
    noun, verb, adjective = rng.choice(NOUNS), rng.choice(VERBS), rng.choice(ADJECTIVES)
    gender["N"] = noun.gender
    kind = noun.kind
    fallback = None
    if kind in adjective.fits:
        target = "noun"
    elif "h" in adjective.fits:
        target = "hero"
    elif "d" in adjective.fits:
        target = "day"
    else:
        target = "fallback"
        fb_kind = next(k for k in adjective.fits if k in "tfa")
        fallback = rng.choice([n for n in _NOUNS_BY_KIND[fb_kind] if n is not noun])
        gender["G"] = fallback.gender
    return Story(seed, index, features, gender, hero, friend, noun, verb, adjective, target, fallback)


def _outline(rng: random.Random, story: Story, dialogue_before_rate: float) -> list[T.Line]:
    """Choose the template of every part, in story order, and the dialogue; returns the middle sentences that
    fit this noun, which `_fit_length` draws on."""
    has = set(story.features)
    has_friend = story.friend is not None
    kind = story.noun.kind

    # Each slot: (paragraph, its sentences, the dialogue exchanges that may follow, whether the friend is there).
    slots: list[tuple[int, list[Piece], list[T.Exchange], bool]] = []
    friend_here = False  # the friend can speak only once the story has brought them in

    def add(para: int, lines: list[T.Line], exchanges: Iterable[T.Exchange] = (), optional: bool = False) -> None:
        fit = [e for e in exchanges if kind in e.kinds and (friend_here or not e.friend)]
        slots.append((para, [Piece(para, optional, line=ln) for ln in lines], fit, friend_here))

    opening = {"hero": T.HERO_OPENINGS, "day": T.DAY_OPENINGS}.get(story.target, T.OPENINGS)
    add(0, [rng.choice(opening)])
    add(0, [rng.choice(T.VERB_INTROS)], T.EXCHANGES["verb"])
    foreshadow = rng.choice(T.FORESHADOWS) if "Foreshadowing" in has else None
    if foreshadow:
        add(0, [foreshadow[0]])
    add(1, [_pick(rng, T.ENCOUNTERS, kind, has_friend)], T.EXCHANGES["encounter"])
    if story.fallback:
        add(1, [_pick(rng, T.FALLBACKS, story.fallback.kind, has_friend)])
    grey = foreshadow in T.GREY_SKY or (story.target == "day" and story.adjective.en in GREY_DAY)
    middles = [m for m in T.MIDDLES if kind in m.kinds and not (grey and m in T.FINE_WEATHER)]
    for m in rng.sample(middles, rng.randint(1, 2)):
        add(1, [m], optional=True)
    if has_friend:
        friend_here = True
        add(1, [rng.choice(T.FRIEND_INTROS)], T.EXCHANGES["friend"])
        if rng.random() < 0.5:
            add(1, [_pick(rng, T.TOGETHER, kind, True)], optional=True)
    conflict = None
    if "Conflict" in has:
        conflict, conflict_talk = rng.choice([c for c in T.CONFLICTS if kind in c[0].kinds])
        add(1, [conflict], conflict_talk)
    if "Twist" in has:
        add(1, [_pick(rng, T.TWISTS, kind, has_friend)], T.EXCHANGES["twist"])
    if foreshadow:
        add(1, [foreshadow[1]])
    bad = "BadEnding" in has
    if conflict and not bad:
        resolutions = [r for r in T.RESOLUTIONS if r.friend == conflict.friend]
        add(2, [rng.choice(resolutions)], T.EXCHANGES["resolution"] if conflict.friend else ())
    endings = T.BAD_ENDINGS if bad else T.GOOD_ENDINGS
    if bad and conflict and conflict.friend:
        endings = T.QUARREL_ENDINGS
    ending = _pick(rng, endings, kind, has_friend)
    add(2, [ending], T.EXCHANGES["bad_ending" if bad else "good_ending"])
    if "MoralValue" in has:
        add(2, [rng.choice(T.BAD_MORALS if bad else T.GOOD_MORALS)], T.EXCHANGES["moral"])

    talk_slots: set[int] = set()
    if "Dialogue" in has:
        open_slots = [i for i, s in enumerate(slots) if s[2]]
        talk_slots = set(rng.sample(open_slots, min(len(open_slots), rng.choice((1, 2, 2, 3)))))
    for i, (para, lines, exchanges, friend_there) in enumerate(slots):
        story.pieces.extend(lines)
        if i in talk_slots:
            optional = i != min(talk_slots)  # the first exchange stays; later ones may go if the story runs long
            story.pieces.extend(_exchange_pieces(rng, rng.choice(exchanges), para, optional, friend_there,
                                                 dialogue_before_rate, i))
    return middles


def _fit_length(rng: random.Random, story: Story, middles: list[T.Line], target: int) -> None:
    """Add middle sentences until the English has about `target` words and both languages at least MIN_WORDS;
    drop optional pieces (narrative first, then extra dialogue) while either has more than MAX_WORDS.
    Keeps the rendered English and translated-Arabic sentences on the story for `render`."""
    slots = {lang: _slots(story, lang, "translated") for lang in LANGS}
    sentences = {lang: [_render_piece(story, p, lang, "translated", slots[lang]) for p in story.pieces]
                 for lang in LANGS}
    sizes = {lang: [len(x.split()) for x in sentences[lang]] for lang in LANGS}

    def total(lang: str) -> int:
        return sum(sizes[lang])

    def keep(indices: list[int]) -> None:
        story.pieces = [story.pieces[i] for i in indices]
        for lang in LANGS:
            sentences[lang] = [sentences[lang][i] for i in indices]
            sizes[lang] = [sizes[lang][i] for i in indices]

    while max(total(lang) for lang in LANGS) > MAX_WORDS:
        droppable = [i for i, p in enumerate(story.pieces) if p.optional and p.quote is None]
        droppable = droppable or [i for i, p in enumerate(story.pieces) if p.optional]
        if not droppable:
            break
        last = story.pieces[droppable[-1]]
        keep([i for i, p in enumerate(story.pieces)
              if i != droppable[-1] and (last.quote is None or p.quote is None or p.group != last.group)])
    unused = [m for m in middles if all(p.line != m for p in story.pieces)]
    rng.shuffle(unused)
    en, ar = total("en"), total("ar")
    while unused and (en < target or min(en, ar) < MIN_WORDS):
        piece = Piece(1, True, line=unused.pop())
        new = {lang: _render_piece(story, piece, lang, "translated", slots[lang]) for lang in LANGS}
        add = {lang: len(new[lang].split()) for lang in LANGS}
        if max(en + add["en"], ar + add["ar"]) > MAX_WORDS:
            continue
        # After the sentences about the noun (and their dialogue), before the friend, conflict or twist.
        at = max(i for i, p in enumerate(story.pieces) if p.line in _BODY) + 1
        while at < len(story.pieces) and story.pieces[at].quote is not None:
            at += 1
        story.pieces.insert(at, piece)
        for lang in LANGS:
            sentences[lang].insert(at, new[lang])
            sizes[lang].insert(at, add[lang])
        en, ar = en + add["en"], ar + add["ar"]
    story.sentences = sentences


# ---- rendering -------------------------------------------------------------------------------------------------

def _article(phrase: str, mass: bool) -> str:
    if mass:
        return "some " + phrase
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _names(story: Story, lang: str, style: str) -> tuple[str, list[str]]:
    """The name origin and the names as this record writes them (hero first)."""
    origin = "arabic" if lang == "ar" and style == "native" else "english"
    which = 1 if origin == "arabic" else 0
    people = [story.hero] + ([story.friend] if story.friend else [])
    return origin, [p[which].latin if lang == "en" else p[which].arabic for p in people]


def _slots(story: Story, lang: str, style: str) -> dict[str, str]:
    """The values of every {field} of the templates for one story in one language and style."""
    _, names = _names(story, lang, style)
    g = story.gender
    noun, verb, adj = story.noun, story.verb, story.adjective
    adj_gender = _adjective_gender(story)
    with_adj = story.target == "noun"
    s = {"hero": _wrap(names[0], _NAME), "friend": _wrap(names[1], _NAME) if len(names) > 1 else ""}
    if lang == "en":
        s.update(
            his_friend=("his" if g["H"] == "m" else "her") + " friend",
            parent="mom" if g["P"] == "f" else "dad",
            noun=noun.en, the_noun="the " + noun.en, The_noun="The " + noun.en,
            adj=adj.en, adj_acc=adj.en, a_adj=_article(adj.en, False),
            to_verb=" ".join(filter(None, (verb.en, verb.en_obj))),
            verb_past=" ".join(filter(None, (verb.en_past, verb.en_obj))),
        )
        np = f"{adj.en} {noun.en}" if with_adj else noun.en
        s.update(np=_article(np, noun.mass), np_acc=_article(np, noun.mass), the_np="the " + np)
        if story.fallback:
            fb = _article(f"{adj.en} {story.fallback.en}", story.fallback.mass)
            s.update(fb_np=fb, fb_np_acc=fb)
        return s
    a_nom, a_acc = adj.ar_for(adj_gender), adj.ar_for(adj_gender, acc=True)
    s.update(
        his_friend="صديق" + ("" if g.get("F") == "m" else "ت") + ("ه" if g["H"] == "m" else "ها"),
        parent=("أم" if g["P"] == "f" else "والد") + ("ه" if g["H"] == "m" else "ها"),
        noun=noun.ar, the_noun=noun.ar_def, The_noun=noun.ar_def,
        adj=a_nom, adj_acc=a_acc, a_adj=a_nom,
        to_verb=verb.ar_to, v_past=verb.ar_past_for(g["H"]), v_obj=" " + verb.ar_obj if verb.ar_obj else "",
    )
    if with_adj:
        s.update(np=f"{noun.ar} {a_nom}", np_acc=f"{noun.ar_acc} {a_acc}", the_np=f"{noun.ar_def} ال{a_nom}")
    else:
        s.update(np=noun.ar, np_acc=noun.ar_acc, the_np=noun.ar_def)
    if story.fallback:
        fb = story.fallback
        s.update(fb_np=f"{fb.ar} {a_nom}", fb_np_acc=f"{fb.ar_acc} {a_acc}")
    return s


def _genders(story: Story, speaker: str = "H", addressee: str = "H") -> str:
    """The gender of every role of _ROLES as one string, the key _resolve caches on."""
    code = story.codes.get((speaker, addressee))
    if code is None:
        g = story.gender
        roles = {**g, "B": "f" if g["H"] == "f" and g.get("F") == "f" else "m"}
        roles["S"], roles["A"] = roles[speaker], roles[addressee]
        code = story.codes[speaker, addressee] = "".join(roles.get(r, "m") for r in _ROLES)
    return code


def _adjective_gender(story: Story) -> str:
    """The gender the drawn adjective agrees with in Arabic: its noun's, the hero's, or يوم's (masculine)."""
    g = story.gender
    return {"noun": g["N"], "hero": g["H"], "day": "m", "fallback": g.get("G", "m")}[story.target]


def _who(story: Story, role: str, lang: str, slots: dict[str, str]) -> str:
    """How the narrator names a speaker in a dialogue tag."""
    if role in "HF":
        return slots["hero" if role == "H" else "friend"]
    if role == "P":
        return slots["parent"] if lang == "ar" else slots["parent"].capitalize()
    return slots["the_noun"]


def _vocative(story: Story, role: str, lang: str, slots: dict[str, str]) -> str:
    """How a speaker calls the addressee: "Tim", "Mom", "little cat"; Arabic with يا."""
    if lang == "en":
        if role == "N":
            return "little " + story.noun.en
        return _who(story, role, lang, slots)
    if role in "HF":
        return "يا " + _who(story, role, lang, slots)
    if role == "P":
        return "يا أمي" if story.gender["P"] == "f" else "يا أبي"
    m = story.noun.gender == "m"
    return f"{'أيها' if m else 'أيتها'} {story.noun.ar_def} {'الصغير' if m else 'الصغيرة'}"


def _render_piece(story: Story, piece: Piece, lang: str, style: str, slots: dict[str, str]) -> str:
    if piece.quote is None:
        return _resolve(getattr(piece.line, lang), _genders(story)).format_map(slots)
    q = piece.quote
    genders = _genders(story, piece.speaker, piece.addressee)
    text = _resolve(getattr(q, lang), genders).format_map({**slots, "voc": _vocative(story, piece.addressee, lang,
                                                                                      slots)})
    en_verb, ar_m, ar_f = T.SPEECH[q.speech][piece.speech]
    who = _who(story, piece.speaker, lang, slots)
    if lang == "en":
        if piece.before:  # a name is capitalised already; behind its marker only "the cat" needs it
            return f'{_wrap(f"{who[0].upper()}{who[1:]} {en_verb}", _TAG_BEFORE)}, "{_wrap(text, _QUOTE)}"'
        text = text[:-1] + "," if text.endswith(".") else text
        tag = f"{en_verb} {who}" if piece.inverted else f"{who} {en_verb}"
        return f'"{_wrap(text, _QUOTE)}" {_wrap(tag, _TAG_AFTER)}.'
    verb = ar_m if genders[_ROLES.index("S")] == "m" else ar_f
    if _arabic_before(piece, style):
        return f"{_wrap(f'{verb} {who}', _TAG_BEFORE)}: «{_wrap(text, _QUOTE)}»"
    return f"«{_wrap(text.removesuffix('.'), _QUOTE)}»، {_wrap(f'{verb} {who}', _TAG_AFTER)}."


def _arabic_before(piece: Piece, style: str) -> bool:
    # Native Arabic puts the tag before the quote; a translation keeps whatever order the English had.
    return style == "native" or piece.before


def render(story: Story, lang: str, style: str) -> dict:
    """One record: the story's text in `lang` and `style` with its ground-truth labels."""
    if lang in story.sentences and (lang == "en" or style == "translated"):
        sentences = story.sentences[lang]
    else:
        slots = _slots(story, lang, style)
        sentences = [_render_piece(story, piece, lang, style, slots) for piece in story.pieces]
    paras: dict[int, list[str]] = {}
    order = []
    for piece, sentence in zip(story.pieces, sentences, strict=True):
        paras.setdefault(piece.para, []).append(sentence)
        if piece.quote is not None:
            before = piece.before if lang == "en" else _arabic_before(piece, style)
            order.append("before" if before else "after")
    origin, names = _names(story, lang, style)
    text, spans = strip_marks("\n\n".join(" ".join(p) for _, p in sorted(paras.items())), origin)
    adj = story.adjective
    if lang == "en":
        words = {"verb": story.verb.en, "noun": story.noun.en, "adjective": adj.en}
    else:
        words = {"verb": story.verb.ar_masdar, "noun": story.noun.ar, "adjective": adj.ar_for(_adjective_gender(story))}
    return {
        "id": story_id(story.seed, story.index),
        "lang": lang,
        "style": style,
        "text": text,
        "names": names,
        "name_origin": origin,
        "dialogue_order": order,
        "quotes": [text[a:b] for a, b in spans["quotes"]],
        "features": list(story.features),
        "words": words,
        "spans": spans,
    }


def strip_marks(marked: str, origin: str) -> tuple[str, dict[str, list[list]]]:
    """The text without its markers, and the character spans [start, end) they enclosed: names with their
    origin, quotes (the text inside the quotation marks) and dialogue tags (speech verb and speaker) with
    their order relative to the quote; each list in order of the span starts."""
    spans: dict[str, list[list]] = {"names": [], "quotes": [], "tags": []}
    open_entry: dict[int, list] = {}  # a kind never nests in itself (a name may sit in a tag or a quote)
    parts: list[str] = []
    pos = at = 0
    for m in _MARKS.finditer(marked):
        parts.append(marked[pos:m.start()])
        at += m.start() - pos
        pos = m.end()
        code = ord(m[0]) - 0xE000
        if code % 2 == 1:
            open_entry.pop(code - 1)[1] = at
            continue
        kind = ("names", "quotes", "tags", "tags")[code // 2]
        label = {"names": [origin], "quotes": [], "tags": ["after" if code == 4 else "before"]}[kind]
        open_entry[code] = [at, -1, *label]
        spans[kind].append(open_entry[code])
    parts.append(marked[pos:])
    return "".join(parts), spans


def story_id(seed: int | str, index: int) -> str:
    return f"storyworld-{seed}-{index}"
