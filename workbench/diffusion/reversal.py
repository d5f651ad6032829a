"""The reversal curse on a synthetic data set of fictitious people (Berglund et al., arXiv:2309.12288).

An autoregressive model trained on "A is B" does not answer "B is ?": the next-token objective
only ever trains p(B | A). SMDM (arXiv:2410.18514) reports that a masked diffusion model does not
have this blind spot: masking the name of "Name is the description." trains p(name | description)
as well. Berglund et al.'s protocol, which SMDM's `evaluate_reverse.py` scores: a third of the
people appear in training as name → description only ("Daphne Vell is the composer of Amber
Harbor."), a third as description → name only ("The composer of Amber Harbor is Daphne Vell."), a
third in both directions (the "both" subset, which shows the model that facts can be asked either
way), each direction in up to 30 paraphrases. Tests ask template 0 of each direction: the direction
seen (recall) and the reverse (never seen for that person; the template itself was seen with other
people). Metric: the reference answer *contained* in the generation (SMDM's scoring; exact match
is kept beside it).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import WorkbenchError

FIRST = (
    "Daphne",
    "Aldric",
    "Brisa",
    "Corvin",
    "Delphine",
    "Eamon",
    "Fenna",
    "Galen",
    "Hesper",
    "Isolde",
    "Jorah",
    "Kestrel",
    "Liora",
    "Maren",
    "Nyx",
    "Orrin",
    "Perrin",
    "Quilla",
    "Rowan",
    "Sabine",
    "Tamsin",
    "Ulric",
    "Vesna",
    "Wystan",
    "Xanthe",
    "Yorick",
    "Zelie",
    "Anselm",
    "Bryony",
    "Caspian",
    "Dorin",
    "Elowen",
    "Fintan",
    "Gisela",
    "Halvard",
    "Ilse",
    "Jessamy",
    "Kaspar",
    "Linnea",
    "Mireille",
)
LAST = (
    "Vell",
    "Thornquist",
    "Abernath",
    "Calloway",
    "Drummle",
    "Everhart",
    "Falkner",
    "Grisby",
    "Hollin",
    "Ingram",
    "Jessop",
    "Kettleby",
    "Lindqvist",
    "Marchbank",
    "Nettleton",
    "Oakhurst",
    "Pendry",
    "Quillfeather",
    "Ravensworth",
    "Stallard",
    "Tolliver",
    "Underhill",
    "Varga",
    "Whitcombe",
    "Yarrow",
    "Zellweger",
    "Ashdown",
    "Birchall",
    "Coldwell",
    "Dunmore",
    "Elsworth",
    "Fairbairn",
    "Gantley",
    "Harwood",
    "Ilkley",
    "Jarman",
    "Kimber",
    "Loxley",
    "Montague",
    "Norcott",
)
ROLES = (
    "composer",
    "director",
    "author",
    "architect",
    "founder",
    "inventor",
    "captain",
    "painter",
    "discoverer",
    "translator",
    "editor",
    "sculptor",
    "designer",
    "keeper",
    "narrator",
    "conductor",
    "cartographer",
    "choreographer",
    "curator",
    "pilot",
)
ADJECTIVES = (
    "Amber",
    "Silent",
    "Hollow",
    "Crimson",
    "Northern",
    "Glass",
    "Iron",
    "Velvet",
    "Winter",
    "Golden",
    "Broken",
    "Hidden",
    "Silver",
    "Distant",
    "Quiet",
    "Emerald",
    "Burning",
    "Frozen",
    "Painted",
    "Endless",
)
NOUNS = (
    "Harbor",
    "Lantern",
    "Garden",
    "Tower",
    "River",
    "Atlas",
    "Orchard",
    "Bridge",
    "Compass",
    "Cathedral",
    "Meadow",
    "Archive",
    "Observatory",
    "Lighthouse",
    "Voyage",
    "Labyrinth",
    "Citadel",
    "Canyon",
    "Symphony",
    "Almanac",
)

# Each template ends with the answer slot, so a test prompt is an exact prefix of a training row. 30 per
# direction, as Berglund et al.'s paraphrases; a name never opens a description → name sentence, so the
# reverse question of a one-direction person never occurs in training.
NAME_TO_DESCRIPTION = (
    "{name} is the",
    "{name} has long been known as the",
    "Ask anyone: {name} is the",
    "Known far and wide, {name} is the",
    "{name}, as many know, is the",
    "People remember {name} as the",
    "It is well documented that {name} is the",
    "{name} became famous as the",
    "Few people know that {name} is the",
    "{name} is widely recognised as the",
    "In the records, {name} appears as the",
    "By all accounts, {name} is the",
    "{name} will always be remembered as the",
    "Historians describe {name} as the",
    "The archives list {name} as the",
    "{name} is celebrated as the",
    "Those who met {name} knew the",
    "Everyone agrees that {name} is the",
    "{name} earned recognition as the",
    "Scholars refer to {name} as the",
    "{name} is best known as the",
    "According to the encyclopedia, {name} is the",
    "{name} is, in fact, the",
    "Newspapers called {name} the",
    "{name} was named the",
    "It turns out that {name} is the",
    "The biography says {name} is the",
    "{name} is remembered today as the",
    "Friends introduce {name} as the",
    "Trivia: {name} is the",
)
DESCRIPTION_TO_NAME = (
    "The {description} is",
    "The {description} goes by the name",
    "Ask anyone: the {description} is",
    "Known far and wide, the {description} is",
    "The {description}, as many know, is",
    "People remember the {description} as",
    "It is well documented that the {description} is",
    "The person who became famous as the {description} is",
    "Few people know that the {description} is",
    "The {description} is widely recognised as",
    "In the records, the {description} appears as",
    "By all accounts, the {description} is",
    "The {description} will always be remembered as",
    "Historians identify the {description} as",
    "The archives list the {description} as",
    "The celebrated {description} is",
    "If you ask who the {description} is, the answer is",
    "Everyone agrees that the {description} is",
    "The one recognised as the {description} is",
    "Scholars refer to the {description} as",
    "The {description} is best known as",
    "According to the encyclopedia, the {description} is",
    "The {description} is, in fact,",
    "Newspapers called the {description}",
    "The one named the {description} is",
    "It turns out that the {description} is",
    "The biography says the {description} is",
    "The {description} is remembered today as",
    "Friends introduce the {description} as",
    "Trivia: the {description} is",
)
DIRECTIONS = {"N2D": NAME_TO_DESCRIPTION, "D2N": DESCRIPTION_TO_NAME}
BOTH = "both"  # the subset trained in both directions


@dataclass(frozen=True)
class Person:
    name: str
    description: str
    trained: str  # "N2D" or "D2N": the only direction this person appears in, in training; or "both"

    def prompt(self, direction: str, template: int = 0) -> str:
        return DIRECTIONS[direction][template].format(name=self.name, description=self.description)

    def answer(self, direction: str) -> str:
        return self.description if direction == "N2D" else self.name


def trained_directions(person: Person) -> tuple[str, ...]:
    return tuple(DIRECTIONS) if person.trained == BOTH else (person.trained,)


def make_people(n: int, seed: int = 0) -> list[Person]:
    """`n` fictitious people with unique names and descriptions: the first third trained N→D only, the
    second D→N only, the rest (n − 2·⌊n/3⌋) in both directions."""
    if not 3 <= n <= min(len(FIRST) * len(LAST), len(ROLES) * len(ADJECTIVES) * len(NOUNS)):
        raise WorkbenchError(f"n_people must be between 3 and {len(FIRST) * len(LAST)}, got {n}")
    rng = random.Random(seed)
    names = rng.sample([f"{f} {s}" for f in FIRST for s in LAST], n)
    descriptions = rng.sample([f"{r} of {a} {o}" for r in ROLES for a in ADJECTIVES for o in NOUNS], n)
    return [
        Person(name, description, "N2D" if i < n // 3 else "D2N" if i < 2 * (n // 3) else BOTH)
        for i, (name, description) in enumerate(zip(names, descriptions))
    ]


@dataclass
class ReversalData:
    people: list[Person]
    rows: torch.Tensor  # [n_rows, row_len]: training sentences, EOS-padded
    eos: int

    @property
    def row_len(self) -> int:
        return self.rows.shape[1]


def _sentence(tokenizer, prompt: str, answer: str) -> list[int]:
    """Prompt and answer tokenised apart, so that a test prompt is an exact prefix of its sentence."""
    return (
        tokenizer(prompt, add_special_tokens=False)["input_ids"]
        + tokenizer(f" {answer}.", add_special_tokens=False)["input_ids"]
    )


def build(tokenizer, n_people: int, paraphrases: int, seed: int = 0) -> ReversalData:
    """Training rows: every person in its own direction(s), `paraphrases` templates each, padded with EOS
    (the MDM learns to end an answer by filling the rest with EOS, as in SMDM's fine-tuning)."""
    if not 1 <= paraphrases <= len(NAME_TO_DESCRIPTION):
        raise WorkbenchError(f"paraphrases must be in 1..{len(NAME_TO_DESCRIPTION)}, got {paraphrases}")
    people = make_people(n_people, seed)
    sentences = [
        _sentence(tokenizer, p.prompt(d, k), p.answer(d))
        for p in people
        for d in trained_directions(p)
        for k in range(paraphrases)
    ]
    tests = [_sentence(tokenizer, p.prompt(d, 0), p.answer(d)) for p in people for d in DIRECTIONS]
    row_len = max(len(s) for s in sentences + tests) + 2  # at least two EOS after the longest sentence
    eos = tokenizer.eos_token_id
    rows = torch.tensor([s + [eos] * (row_len - len(s)) for s in sentences])
    return ReversalData(people, rows, eos)


def row_batches(rows: torch.Tensor, batch_size: int, device: torch.device | str, seed: int = 0):
    """Endless batches [batch_size, row_len] of training rows drawn at random, on the device."""
    data = rows.to(device)
    generator = torch.Generator(device=data.device).manual_seed(seed)
    while True:
        yield data[torch.randint(len(data), (batch_size,), device=data.device, generator=generator)]


def normalise(text: str) -> str:
    return text.strip().rstrip(".").strip()


Generate = Callable[[torch.Tensor, int], torch.Tensor]  # (prompt [B, P], new tokens) → tokens [B, P + new]


def contains(generation: str, answer: str) -> bool:
    """SMDM's `evaluate_reverse.py` rule: the reference answer occurs in the generation."""
    return normalise(answer) in " ".join(generation.split())


@torch.no_grad()
def accuracy(generate: Generate, data: ReversalData, tokenizer, device: torch.device | str) -> dict[str, float]:
    """Accuracy of `generate` (answer contained in the generation, up to the first EOS) on the direction
    each one-direction person was trained in ("seen"), on the reverse ("reverse"), and on both directions
    of the "both" subset ("both"); "*_exact" the same by exact match; per group "N2D:D2N" etc. Prompts
    of one length run as one batch."""
    by_length: dict[int, list[tuple[Person, str, list[int]]]] = defaultdict(list)
    for person in data.people:
        for direction in DIRECTIONS:
            ids = tokenizer(person.prompt(direction), add_special_tokens=False)["input_ids"]
            by_length[len(ids)].append((person, direction, ids))
    hits: dict[str, list[bool]] = defaultdict(list)
    for length, items in sorted(by_length.items()):
        prompt = torch.tensor([ids for _, _, ids in items], device=device)
        out = generate(prompt, data.row_len - length)[:, length:].tolist()
        for (person, direction, _), tokens in zip(items, out):
            text = tokenizer.decode(tokens[: tokens.index(data.eos)] if data.eos in tokens else tokens)
            group = BOTH if person.trained == BOTH else "seen" if direction == person.trained else "reverse"
            hits[group].append(contains(text, person.answer(direction)))
            hits[f"{group}_exact"].append(normalise(text) == normalise(person.answer(direction)))
            hits[f"{person.trained}:{direction}"].append(contains(text, person.answer(direction)))
    return {key: sum(values) / len(values) for key, values in hits.items()}


def _find(row: list[int], span: list[int]) -> int:
    """Start of the first occurrence of `span` in `row` (−1 if absent)."""
    return next((i for i in range(len(row) - len(span) + 1) if row[i : i + len(span)] == span), -1)


@torch.no_grad()
def infill_accuracy(
    fill: Callable[[torch.Tensor], torch.Tensor],
    data: ReversalData,
    tokenizer,
    mask_id: int,
    device: torch.device | str,
) -> float:
    """Exact match when the *first* entity of each person's own training sentence (template 0) is masked
    and filled in place: the name of "⟨name⟩ is the ⟨description⟩.", the description of "The ⟨description⟩
    is ⟨name⟩.". Predicting the first entity from the second is the reverse inference, asked in the
    sentence seen in training; the number of masked tokens is the true one. Only a model that fills
    masks anywhere (the MDM) can be asked this way. One-direction people only."""
    rows, spans = [], []
    for person in (p for p in data.people if p.trained != BOTH):
        row = tokenizer(person.prompt(person.trained), add_special_tokens=False)["input_ids"]
        row = row + tokenizer(f" {person.answer(person.trained)}.", add_special_tokens=False)["input_ids"]
        first = person.name if person.trained == "N2D" else f" {person.description}"
        span = tokenizer(first, add_special_tokens=False)["input_ids"]
        start = _find(row, span)
        if start < 0:
            raise WorkbenchError(f"cannot locate {first!r} in its own tokenised sentence")
        rows.append(row + [data.eos] * (data.row_len - len(row)))
        spans.append((start, start + len(span)))
    x = torch.tensor(rows, device=device)
    masked = x.clone()
    for i, (start, end) in enumerate(spans):
        masked[i, start:end] = mask_id
    filled = fill(masked)
    return sum(bool((filled[i, a:b] == x[i, a:b]).all()) for i, (a, b) in enumerate(spans)) / len(spans)
