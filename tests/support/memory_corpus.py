"""A generated memory corpus: one user's hundreds of threads of small talk with planted facts, and the
later questions that should bring each fact back. Used by the quality test and by `make bench`.

Questions paraphrase their fact (different words around the same key nouns), and the filler reuses
the facts' vocabulary (flights, passwords, lockers, deadlines) so a fact is never found by a topic
word alone.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from threadline.db.database import Connection, Database
from threadline.db.embeddings import PostgresEmbeddings
from threadline.db.recall import PostgresRecall
from threadline.domain.memory import PendingMessage, RecallQuery
from threadline.ports import Embedder
from threadline.service.embeddings import EmbeddingPipeline

NAMES = ["Ingrid", "Tomasz", "Aiko", "Mateo", "Priya", "Lars", "Chiara", "Kwame", "Elif", "Ronan", "Yusuf"]
RELATIONS = ["sister", "brother", "neighbour", "manager", "cousin", "dentist", "landlord", "accountant"]
PLACES = ["cabin", "office", "gym", "studio", "library", "warehouse", "clinic", "marina"]
CITIES = ["Lisbon", "Oslo", "Kyoto", "Nairobi", "Lima", "Tallinn", "Hanoi", "Porto", "Quebec"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
FOODS = ["peanuts", "shellfish", "sesame", "kiwi", "celery", "mustard", "lupin", "soy"]
PETS = ["cat", "dog", "parrot", "tortoise", "rabbit", "ferret", "hamster"]
OBJECTS = ["drill", "ladder", "tent", "camera", "bicycle", "projector", "kayak", "telescope"]
PROJECTS = ["Atlas", "Borealis", "Cobalt", "Dynamo", "Ember", "Falcon", "Granite", "Helix"]
COLOURS = ["teal", "amber", "violet", "crimson", "olive", "indigo"]

# (fact, question): the question shares the fact's key nouns, not its phrasing.
TEMPLATES: list[tuple[str, str]] = [
    ("My {relation}'s name is {name}, we grew up in the same town.", "What is my {relation} called?"),
    ("The wifi password at the {place} is {colour}-{city}-{n}.", "What was the {place} wifi password again?"),
    ("I parked the car on level {n} of the {place} garage this morning.",
     "Which level is the car on at the {place}?"),
    ("My flight to {city} leaves at {hour}:15 on {day}.", "When does my {city} flight leave?"),
    ("Remember that I'm allergic to {food}, it's serious.", "Which food allergy do I have to watch for?"),
    ("Our {pet} is called {name} and she is nine years old.", "What's the name of our {pet}?"),
    ("The {relation} appointment is on {day} at {hour} o'clock.", "When is the {relation} appointment?"),
    ("My locker code at the {place} is {n}{n}.", "What's the code for my {place} locker?"),
    ("I lent {name} my {object} last week.", "Who borrowed my {object}?"),
    ("The {project} deadline moved to {day} next week.", "When is the {project} deadline now?"),
    ("The spare key for the {place} is under the {colour} flowerpot.", "Where is the spare {place} key?"),
    ("My favourite {colour} {object} broke, I need a new one from {city}.",
     "Where do I need the new {object} from?"),
]  # fmt: skip
FILLER = [
    "Can you suggest a good book about {city}?",
    "I had a long day at the {place}, everything took forever.",
    "What do you think about {colour} walls in a small room?",
    "Remind me to call the {relation} about the {project} plans.",
    "We might visit {city} in the spring if flights are cheap.",
    "The {object} in the {place} needs a new battery.",
    "How long should I boil eggs for a soft yolk?",
    "My {pet} keeps waking me up at five.",
    "Is it worth learning Rust for a side project like {project}?",
    "The weather on {day} looks terrible again.",
    "Give me a quick recipe without {food}.",
    "I changed the wifi router at home, it is much faster now.",
    "The garage door at the {place} is squeaking.",
    "Our team meeting about {project} ran over by an hour.",
    "What is a polite way to decline an invitation?",
    "I need a password manager recommendation.",
    "Flights to {city} are so expensive this month.",
    "Summarise the plot of a famous novel in three sentences.",
]
USER = "corpus-user"


@dataclass(frozen=True, slots=True)
class Fact:
    message_id: uuid.UUID
    question: str


@dataclass(frozen=True, slots=True)
class Corpus:
    user_id: str
    messages: list[tuple[uuid.UUID, uuid.UUID, int, str, str, datetime]]
    threads: list[uuid.UUID]
    facts: list[Fact]


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        name=rng.choice(NAMES), relation=rng.choice(RELATIONS), place=rng.choice(PLACES),
        city=rng.choice(CITIES), day=rng.choice(DAYS), food=rng.choice(FOODS), pet=rng.choice(PETS),
        object=rng.choice(OBJECTS), project=rng.choice(PROJECTS), colour=rng.choice(COLOURS),
        n=rng.randint(2, 9), hour=rng.randint(6, 21),
    )  # fmt: skip


def generate(
    *, threads: int, messages_per_thread: int, facts: int, seed: int = 7, user_id: str = USER
) -> Corpus:
    """`threads` threads of alternating user and assistant messages; `facts` user messages are facts.

    Each fact's slots are drawn once and used for its question too. A fact whose question would be
    ambiguous (the same question for two facts) is skipped, so every question has one right answer.
    """
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    thread_ids = [uuid.uuid4() for _ in range(threads)]
    slots = [(t, seq) for t in range(threads) for seq in range(1, messages_per_thread + 1, 2)]
    planted = dict.fromkeys(rng.sample(slots, facts))
    rows: list[tuple[uuid.UUID, uuid.UUID, int, str, str, datetime]] = []
    found: list[Fact] = []
    questions: set[str] = set()
    for t, thread_id in enumerate(thread_ids):
        for seq in range(1, messages_per_thread + 1):
            when = start + timedelta(days=t, minutes=seq)
            message_id = uuid.uuid4()
            if seq % 2 == 0:
                rows.append((message_id, thread_id, seq, "assistant", _fill(rng.choice(FILLER), rng), when))
                continue
            if (t, seq) in planted:
                fact, question = rng.choice(TEMPLATES)
                values = {k: _fill("{" + k + "}", rng) for k in ("name", "relation", "place", "city", "day",
                          "food", "pet", "object", "project", "colour", "n", "hour")}  # fmt: skip
                text, asked = fact.format(**values), question.format(**values)
                if asked not in questions:
                    questions.add(asked)
                    found.append(Fact(message_id, asked))
                rows.append((message_id, thread_id, seq, "user", text, when))
            else:
                rows.append((message_id, thread_id, seq, "user", _fill(rng.choice(FILLER), rng), when))
    return Corpus(user_id=user_id, messages=rows, threads=thread_ids, facts=found)


async def load(connection: Connection, corpus: Corpus) -> None:
    """The corpus's threads and messages, copied in (no vectors yet)."""
    await connection.copy_records_to_table(
        "threads",
        records=[(t, corpus.user_id, "default") for t in corpus.threads],
        columns=["id", "user_id", "agent"],
    )
    await connection.copy_records_to_table(
        "messages",
        records=[
            (m, t, corpus.user_id, seq, role, text, when) for m, t, seq, role, text, when in corpus.messages
        ],
        columns=["id", "thread_id", "user_id", "seq", "role", "content", "created_at"],
    )


async def embed(database: Database, corpus: Corpus, embedder: Embedder, batch_size: int = 256) -> None:
    pipeline = EmbeddingPipeline(embedder=embedder, store=PostgresEmbeddings(database), batch_size=batch_size)
    await pipeline.embed([PendingMessage(m, text) for m, _, _, _, text, _ in corpus.messages])


async def recall_at(
    database: Database, corpus: Corpus, embedder: Embedder, *, k: int = 5, ef_search: int = 100
) -> float:
    """The share of questions whose fact is among the `k` messages recalled for it, asked from a new
    thread (nothing is in its window) over all of the user's threads, no score threshold."""
    recall = PostgresRecall(database)
    vectors = await embedder.embed([fact.question for fact in corpus.facts])
    hits = 0
    for fact, vector in zip(corpus.facts, vectors, strict=True):
        query = RecallQuery(
            user_id=corpus.user_id, thread_id=uuid.uuid4(), run_id=uuid.uuid4(), vector=vector,
            embedder=embedder.name, window_seq=1, top_k=k, other_threads=True, min_score=-1.0,
            thread_boost=0.0, ef_search=ef_search,
        )  # fmt: skip
        found = await recall.recall(query)
        hits += any(item.message_id == fact.message_id for item in found)
    return hits / len(corpus.facts)


def describe(corpus: Corpus) -> str:
    return f"{len(corpus.threads)} threads, {len(corpus.messages)} messages, {len(corpus.facts)} facts"


__all__: Sequence[str] = ("Corpus", "Fact", "describe", "embed", "generate", "load", "recall_at")
