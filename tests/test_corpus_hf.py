"""The hf: corpus path, offline: a local dataset folder read through `datasets` as a Hub name would be."""

import pytest
import torch

from workbench import data
from workbench.errors import WorkbenchError
from workbench.models import load_tokenizer

pytest.importorskip("datasets")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


STORIES = [f"Once upon a time, story {i} had a fox who counted to {i}." for i in range(300)]


@pytest.fixture
def dataset(tmp_path):
    """A folder laid out as a Hub dataset repository: data/train-*.parquet with a "text" column."""
    folder = tmp_path / "tiny-stories"
    (folder / "data").mkdir(parents=True)
    for shard in range(2):
        rows = STORIES[shard * 150 : (shard + 1) * 150] + ["   "]  # a blank row is skipped
        table = pa.table({"text": rows, "id": list(range(len(rows)))})
        pq.write_table(table, folder / f"data/train-0000{shard}.parquet")
    return folder


def test_local_dataset_streams_like_a_hub_name(dataset, monkeypatch, tmp_path, tokenizer):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    corpus = data.load_corpus(f"hf:{dataset}")
    assert corpus.documents == tuple(STORIES)  # both shards, in order, the blank row dropped
    splits = data.token_splits(f"hf:{dataset}", tokenizer)
    assert splits.fingerprint == corpus.fingerprint and splits.n_val > 0
    assert splits.n_train + splits.n_val == len(data.tokenize(corpus, tokenizer))
    batch = next(data.batches(splits.train, 4, 16))
    assert batch.shape == (4, 16) and batch.dtype == torch.int64


def test_stream_stops_at_the_budget(dataset, monkeypatch):
    monkeypatch.setattr(data, "HF_MAX_CHARS", 200)
    documents = data._hf_dataset(str(dataset), None, "train", "text", max_chars=200)
    assert sum(map(len, documents[:-1])) < 200 <= sum(map(len, documents)) and len(documents) < 10


def test_missing_column_and_dataset_are_one_line(dataset, tmp_path):
    with pytest.raises(WorkbenchError, match="no column 'content'"):
        data._hf_dataset(str(dataset), None, "train", "content")
    with pytest.raises(WorkbenchError, match="cannot load dataset"):
        data.load_corpus(f"hf:{tmp_path / 'nothing-here'}")
