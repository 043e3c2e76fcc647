"""The distributor's decision time, without Asterisk: `python -m bench.distributor`.

1,000 callers wait, spread over 10 topics (one in ten with a boost of 30 or 60 s), for 200 agents
each in 1-3 topics with penalties 0-2. Measured, on fresh seeded random state each round:
  (a) one_free_agent: every agent but one is busy (ringing for a waiting caller, on a call, in
      wrap-up or paused); the last one's call ends, and one match() finds their next caller.
      Each round is a second later on the same desk (last round's agent answers, a caller
      joins, another call ends); a fresh random desk every 10 rounds;
  (b) burst: all 200 agents log in at the same instant and one match() makes 200 offers.
With `--recall-share 0.5`, one waiting caller in five is a recall request and recalls get at
most that share of the agents (queue_manager.queues): the line is scanned further for a live
caller, and each pick is counted (bench/results/distributor-share.json).
Only match() is timed. Results are printed and written to bench/results/distributor.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cti.agents import Agent, AgentState
from cti.distributor import Distributor
from queue_manager.queues import QueueManager, Waiting

RESULTS = Path(__file__).parent / "results"
SEED = 20260302
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TOPICS = [f"topic{n}" for n in range(10)]
CALLERS, AGENTS = 1000, 200
TARGET_P99_MS = 1.0


SHARE = 1.0  # recalls' share (--recall-share); below 1, one waiting caller in five is a recall


def callers(rng: random.Random) -> QueueManager:
    queues = QueueManager(recall_share=SHARE)
    for n in range(CALLERS):
        since = NOW - timedelta(seconds=rng.uniform(0, 1800))
        boost = rng.choice((30, 60)) if rng.random() < 0.1 else 0
        recall = SHARE < 1 and rng.random() < 0.2
        queues.join(Waiting(f"c{n}", rng.choice(TOPICS), since, caller=f"06{n:08d}", boost=boost,
                            recall=recall))
    return queues


def agents(rng: random.Random) -> list[Agent]:
    return [Agent(f"a{n:03d}", f"Agente {n}", f"PJSIP/a{n:03d}",
                  {t: rng.randint(0, 2) for t in rng.sample(TOPICS, rng.randint(1, 3))})
            for n in range(AGENTS)]


def busy_desk(rng: random.Random) -> Distributor:
    """All agents in and busy: ringing for a waiting caller, on a call, in wrap-up or paused."""
    queues, team = callers(rng), agents(rng)
    for a in team:
        a.login(NOW - timedelta(seconds=rng.uniform(600, 7200)), a.id)
        kind = rng.random()
        if kind < 0.3:  # ringing for a waiting caller of theirs
            waiting = queues.first_unoffered(a.topics)
            if waiting is not None:
                a.offer(waiting.call_id, NOW - timedelta(seconds=rng.uniform(0, 20)))
                waiting.offered_to = a.id
                continue
        if kind < 0.9:  # talking, or wrapping up, with a caller no longer waiting
            a.offer(f"x-{a.id}", NOW - timedelta(seconds=600))
            a.answered(NOW - timedelta(seconds=rng.uniform(0, 590)))
            if kind > 0.8:
                a.call_ended(NOW - timedelta(seconds=rng.uniform(0, 10)), wrap_up=30)
        else:
            a.pause(NOW - timedelta(seconds=rng.uniform(0, 600)), "pausa", a.id)
    return Distributor(queues, team)


def one_free_agent(rng: random.Random, rounds: int, per_desk: int = 10) -> list[float]:
    """Each round, a second later: the agent offered a caller last round answers, a new caller
    joins, and a random agent's call ends, so that they are the only one available; match() finds
    their caller. A fresh random desk every `per_desk` rounds."""
    samples: list[float] = []
    distributor, now, offered = busy_desk(rng), NOW, None
    for n in range(rounds):
        if n % per_desk == 0:
            distributor, now, offered = busy_desk(rng), NOW, None
        now += timedelta(seconds=1)
        queues, team = distributor.queues, list(distributor.agents.values())
        if offered is not None:
            queues.leave(offered.call_id or "")
            offered.answered(now)
        boost = rng.choice((30, 60)) if rng.random() < 0.1 else 0
        queues.join(Waiting(f"n{n}", rng.choice(TOPICS), now, boost=boost))
        free = rng.choice([a for a in team if a.state is AgentState.ON_CALL])
        free.call_ended(now, wrap_up=0)
        start = time.perf_counter_ns()
        made = distributor.match(now)
        samples.append((time.perf_counter_ns() - start) / 1e6)
        assert [offer.agent_id for offer, _ in made] == [free.id], made
        offered = free
    return samples


def burst(rng: random.Random) -> Distributor:
    """Nobody in yet; then everybody logs in at once."""
    queues, team = callers(rng), agents(rng)
    for a in team:
        a.login(NOW, a.id)
    return Distributor(queues, team)


def timed_match(distributor: Distributor) -> tuple[float, int]:
    start = time.perf_counter_ns()
    offers = distributor.match(NOW)
    return (time.perf_counter_ns() - start) / 1e6, len(offers)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99),
            "max_ms": round(ordered[-1], 4)}


def run(rounds: int, bursts: int) -> dict:
    rng = random.Random(SEED)
    single = one_free_agent(rng, rounds)
    whole, per_offer, offers_burst = [], [], set()
    for _ in range(bursts):
        distributor = burst(rng)
        ms, made = timed_match(distributor)
        whole.append(ms)
        per_offer.append(ms / made)
        offers_burst.add(made)
    p99 = percentiles(single)["p99_ms"]
    return {
        "benchmark": "distributor",
        "callers": CALLERS,
        "topics": len(TOPICS),
        "agents": AGENTS,
        "seed": SEED,
        "recall_share": SHARE,
        "one_free_agent": {"rounds": rounds, "offers_per_match": [1], **percentiles(single)},
        "burst": {"rounds": bursts, "offers_per_match": sorted(offers_burst),
                  "match": percentiles(whole), "per_offer": percentiles(per_offer)},
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": p99 < TARGET_P99_MS,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000, help="one-free-agent rounds")
    parser.add_argument("--bursts", type=int, default=50, help="burst rounds")
    parser.add_argument("--recall-share", type=float, default=1.0,
                        help="below 1: one caller in five is a recall, with this share")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    global SHARE  # noqa: PLW0603 - a command-line knob every helper of this one-shot script reads
    SHARE = args.recall_share
    result = run(args.rounds, args.bursts)
    text = json.dumps(result, indent=2) + "\n"
    print(text, end="")
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        name = "distributor.json" if SHARE >= 1 else "distributor-share.json"
        tmp = RESULTS / f"{name}.tmp"
        tmp.write_text(text)
        tmp.replace(RESULTS / name)


if __name__ == "__main__":
    main()
