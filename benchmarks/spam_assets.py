"""Build the second benchmark task, spam filtering, under ``assets/spam/``.

``python -m benchmarks.spam_assets SOURCE_CSV`` copies a seeded, stratified subset of a
SpamAssassin CSV (columns id, subject, text, label) into ``assets/spam/texts.csv``, writes
the concept graph with regex/keyword rules to ``assets/spam/graph.json`` and caches the
all-MiniLM-L6-v2 embeddings in ``assets/spam/embeddings.npz`` (float16). The benchmarks read
only these files, so they run without the source corpus.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "spam"
N_ROWS = 2000  # subset size: large enough for 600-label curves plus a 400-text test split
MAX_CHARS = 1200  # texts are cut here; the encoder reads only the first 128 tokens anyway


def _node(name: str, question: str, rule: dict | None, values=("no", "yes")) -> dict:
    node = {"name": name, "question": question, "values": list(values)}
    if rule is not None:
        node["rule"] = rule
    return node


def spam_graph() -> dict:
    """Return the spam concept graph: 7 text-level concepts, 3 summary concepts, the label."""
    nodes = [
        _node("has_link", "Does the e-mail contain a web link?",
              {"yes": {"regex": [r"https?://", r"\bwww\."]}, "default": "no"}),
        _node("money_talk", "Does it talk about money, prices or free offers?",
              {"yes": {"regex": [r"\$\s?\d", r"\d+\s?%\s?off"],
                       "keywords": ["free", "cash", "money", "price", "discount", "save", "offer",
                                    "credit", "income", "profit", "mortgage", "loan"]},
               "default": "no"}),
        _node("urgency", "Does it push the reader to act quickly?",
              {"yes": {"keywords": ["act now", "limited time", "urgent", "today only", "expires",
                                    "don't miss", "hurry", "immediately", "last chance"]},
               "default": "no"}),
        _node("html_markup", "Does the body contain HTML markup?",
              {"yes": {"regex": [r"<\s*(html|table|td|font|body|br|p)\b", r"&nbsp;"]},
               "default": "no"}),
        _node("unsubscribe_footer", "Does it offer a way to unsubscribe or be removed?",
              {"yes": {"keywords": ["unsubscribe", "opt out", "opt-out", "remove me",
                                    "removed from", "mailing list"]}, "default": "no"}),
        _node("personal_reply", "Is it a reply in a conversation (quotes, 'wrote:')?",
              {"yes": {"regex": [r"^\s*>", r"\bwrote:", r"^Re:"]}, "default": "no"}),
        _node("technical_talk", "Does it discuss software or systems?",
              {"yes": {"keywords": ["linux", "perl", "python", "kernel", "rpm", "debian", "cvs",
                                    "patch", "bug", "compile", "server", "spamassassin", "razor",
                                    "exmh", "config"]}, "default": "no"}),
        _node("sales_pitch", "Is the e-mail trying to sell something?",
              {"yes": {"regex": [r"(free|discount|offer|save|\$\s?\d).{0,300}"
                                 r"(order|buy|call|click|act now|limited)"]}, "default": "no"}),
        _node("bulk_mail", "Does it look like bulk mail sent to a list?",
              {"yes": {"regex": [r"(unsubscribe|opt.?out|removed? from)",
                                 r"<\s*(html|table|font)\b"]}, "default": "no"}),
        _node("conversation", "Is it part of a discussion between people?",
              {"yes": {"regex": [r"\bwrote:", r"^\s*>", r"^Re:"]}, "default": "no"}),
        _node("label", "Is this e-mail spam or legitimate (ham)?", None, values=("ham", "spam")),
    ]
    edges = [
        ("money_talk", "sales_pitch"), ("urgency", "sales_pitch"), ("has_link", "sales_pitch"),
        ("html_markup", "bulk_mail"), ("unsubscribe_footer", "bulk_mail"), ("has_link", "bulk_mail"),
        ("personal_reply", "conversation"), ("technical_talk", "conversation"),
        ("sales_pitch", "label"), ("bulk_mail", "label"), ("conversation", "label"),
    ]
    for node in nodes:  # rules read the text with MULTILINE so ^ matches quoted lines
        rule = node.get("rule")
        if rule is not None:
            for value, cond in rule.items():
                if isinstance(cond, dict) and "regex" in cond:
                    cond["regex"] = ["(?m)" + r for r in cond["regex"]]
    return {"task": "Is this e-mail spam or legitimate (ham)?", "output": "label",
            "nodes": nodes, "edges": [list(e) for e in edges]}


def build(source: Path, *, n_rows: int = N_ROWS, seed: int = 0) -> None:
    """Write texts.csv, graph.json and embeddings.npz under assets/spam/."""
    data = pd.read_csv(source).dropna(subset=["text", "label"])
    share = n_rows / len(data)
    subset = pd.concat([data[data["label"] == label].sample(frac=share, random_state=seed)
                        for label in sorted(data["label"].unique())])
    subset = subset.sample(frac=1.0, random_state=seed).head(n_rows)
    subject = subset["subject"].fillna("").astype(str)
    text = (subject.where(subject == "", "Subject: " + subject + "\n") + subset["text"].astype(str))
    out = pd.DataFrame({"id": subset["id"], "text": text.str.slice(0, MAX_CHARS),
                        "gold_label": subset["label"]})
    ASSETS.mkdir(parents=True, exist_ok=True)
    out.to_csv(ASSETS / "texts.csv", index=False)
    (ASSETS / "graph.json").write_text(json.dumps(spam_graph(), indent=2) + "\n")
    from gcp.encoder import EncoderConfig, TextEncoder

    X = TextEncoder(EncoderConfig()).encode(list(out["text"]))
    np.savez_compressed(ASSETS / "embeddings.npz", ids=np.array(out["id"], dtype=str),
                        X=X.astype(np.float16))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="SpamAssassin CSV with id, subject, text, label")
    parser.add_argument("--rows", type=int, default=N_ROWS)
    args = parser.parse_args()
    build(args.source, n_rows=args.rows)
