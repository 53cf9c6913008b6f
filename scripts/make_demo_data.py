"""Regenerate the tiny demo graph shipped in embretrain/demo_data/ (deterministic).

A toy world: people live in cities, cities lie in countries, people know people in their city
and work in one of a few sectors. ``new.tsv`` lists people who arrive "tonight"; ``delta.tsv``
holds their triples; ``test.tsv`` holds held-out triples of old and new people.

    python scripts/make_demo_data.py
"""

from __future__ import annotations

import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "embretrain" / "demo_data"


def main(seed: int = 7) -> None:
    rng = random.Random(seed)
    countries = [f"country_{i:02d}" for i in range(6)]
    cities = [f"city_{i:02d}" for i in range(24)]
    sectors = [f"sector_{i}" for i in range(5)]
    city_country = {c: countries[i % len(countries)] for i, c in enumerate(cities)}
    people = [f"person_{i:04d}" for i in range(360)]
    home = {p: rng.choice(cities) for p in people}
    job = {p: rng.choice(sectors) for p in people}
    by_city: dict[str, list[str]] = {}
    for p in people:
        by_city.setdefault(home[p], []).append(p)

    def triples_of(p: str) -> list[tuple[str, str, str]]:
        out = [(p, "lives_in", home[p]), (p, "works_in", job[p]), (p, "citizen_of", city_country[home[p]])]
        for q in rng.sample(by_city[home[p]], k=min(3, len(by_city[home[p]]))):
            if q != p:
                out.append((p, "knows", q))
        return out

    new = set(people[-40:])  # the last 40 people arrive in the delta
    base, delta, test = [], [], []
    for c in cities:
        base.append((c, "located_in", city_country[c]))
    for p in people:
        facts = triples_of(p)
        rng.shuffle(facts)
        held = facts[0] if rng.random() < 0.5 else None
        for f in facts:
            touches_new = f[0] in new or f[2] in new
            if f is held:
                test.append(f)
            elif touches_new:
                delta.append(f)
            else:
                base.append(f)
    OUT.mkdir(parents=True, exist_ok=True)
    write = lambda name, rows: (OUT / name).write_text("".join("\t".join(r) + "\n" for r in rows))  # noqa: E731
    write("train.tsv", base)
    write("delta.tsv", delta)
    write("test.tsv", test)
    (OUT / "new.tsv").write_text("".join(p + "\n" for p in people[-40:]))
    print(f"wrote {OUT}: base {len(base)}, delta {len(delta)}, test {len(test)}, new {len(new)}")


if __name__ == "__main__":
    main()
