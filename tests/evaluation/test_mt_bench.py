"""MT-Bench: loaders (upstream files from ../shared when present), answers, judging through a local
OpenAI-compatible server on 127.0.0.1, the judgment cache, and the local hf judge."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lisa_bench.cli import main
from lisa_bench.errors import BadInput
from lisa_bench.evaluation.mt_bench.answer import TEMPERATURE
from lisa_bench.evaluation.mt_bench.data import CATEGORIES, OFFLINE_DIR, load_bench
from lisa_bench.evaluation.mt_bench.judge import (JudgmentCache, JudgeUnavailable, OpenAIJudge, judge_answers,
                                                  parse_rating, summarize)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "mt_bench"


def test_upstream_files_load():
    if not (SHARED / "question.jsonl").exists():
        pytest.skip(f"upstream MT-Bench files not found at {SHARED}")
    bench = load_bench(str(SHARED))
    assert len(bench.questions) == 80
    counts = {c: sum(q["category"] == c for q in bench.questions) for c in CATEGORIES}
    assert set(counts.values()) == {10}
    assert len(bench.references) == 30
    assert "{ref_answer_1}" in bench.prompts["single-math-v1"]["prompt_template"]


def test_offline_set_has_the_same_form():
    bench = load_bench("offline")
    assert {q["category"] for q in bench.questions} == set(CATEGORIES)
    assert all(len(q["turns"]) == 2 for q in bench.questions)
    need_ref = {q["question_id"] for q in bench.questions if q["category"] in ("math", "reasoning", "coding")}
    assert need_ref == set(bench.references)


def test_malformed_question_file_names_file_and_line(tmp_path):
    (tmp_path / "question.jsonl").write_text('{"question_id": 1, "category": "math", "turns": ["a", "b"]}\n{oops\n')
    (tmp_path / "judge_prompts.jsonl").write_text((OFFLINE_DIR / "judge_prompts.jsonl").read_text())
    with pytest.raises(BadInput, match=r"question.jsonl:2: malformed JSON line"):
        load_bench(str(tmp_path))
    (tmp_path / "question.jsonl").write_text('{"question_id": 1, "category": "poetry", "turns": ["a", "b"]}\n')
    with pytest.raises(BadInput, match="unknown category 'poetry'"):
        load_bench(str(tmp_path))


@pytest.mark.parametrize("text, score", [("Rating: [[7]]", 7.0), ("I give [[8.5]].", 8.5), ("score [6]", 6.0),
                                         ("[[3]] but [9]", 3.0), ("no number here", -1.0), ("[[ten]]", -1.0)])
def test_parse_rating(text, score):
    assert parse_rating(text) == score


def _answers(bench, n=None):
    return [{"question_id": q["question_id"], "answer_id": str(q["question_id"]), "model_id": "m",
             "choices": [{"index": 0, "turns": [f"answer one to {q['question_id']}", "answer two"]}], "tstamp": 0}
            for q in bench.questions[:n]]


class FakeJudgeServer:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1 answering in the upstream judge formats."""

    REPLIES = ["The answer is correct and clear. Rating: [[8]]", "Adequate. Rating: [6]",
               "I cannot decide on a number."]

    def __init__(self, fail_after=None):
        self.requests = []
        self.fail_after = fail_after
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                if outer.fail_after is not None and len(outer.requests) > outer.fail_after:
                    self.send_response(503)
                    self.end_headers()
                    return
                reply = outer.REPLIES[(len(outer.requests) - 1) % len(outer.REPLIES)]
                data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": reply}}],
                                   "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def server():
    s = FakeJudgeServer()
    yield s
    s.close()


def test_openai_judge_against_local_server_with_cache(server, tmp_path):
    bench = load_bench("offline")
    answers = _answers(bench, 6)
    judge = OpenAIJudge("gpt-4", server.url, "test-key", retries=0)
    cache = JudgmentCache(tmp_path / "cache.jsonl")
    rows, calls = judge_answers(bench, answers, judge, cache, "m", parallel=3, progress=False)
    assert calls == 12 == len(server.requests) == len(rows)
    assert {r["score"] for r in rows} == {8.0, 6.0, -1.0}
    math_rows = [r for r in rows if r["category"] in ("math", "reasoning", "coding")]
    assert math_rows and all(r["judge"][1].startswith("single-math-v1") for r in math_rows)
    assert {r["judge"][1] for r in rows if r["turn"] == 2} <= {"single-v1-multi-turn", "single-math-v1-multi-turn"}
    ref = bench.references[math_rows[0]["question_id"]][0]
    assert any(ref in r["user_prompt"] for r in math_rows)
    summary = summarize(rows)
    assert summary["n_failures"] == 4 and summary["n_judgments"] == 12
    assert summary["overall"] == pytest.approx(7.0)
    # a second run, even with a fresh cache object over the same file, makes no judge call
    again, calls2 = judge_answers(bench, answers, judge, JudgmentCache(tmp_path / "cache.jsonl"), "m", progress=False)
    assert calls2 == 0 and len(server.requests) == 12
    assert [r["score"] for r in again] == [r["score"] for r in rows]


def test_failing_endpoint_keeps_judgments_made(tmp_path):
    srv = FakeJudgeServer(fail_after=3)
    try:
        bench = load_bench("offline")
        judge = OpenAIJudge("gpt-4", srv.url, "k", retries=1, backoff=0.01)
        cache = JudgmentCache(tmp_path / "cache.jsonl")
        with pytest.raises(JudgeUnavailable, match=f"judge endpoint {srv.url} failed after 2 attempts"):
            judge_answers(bench, _answers(bench, 4), judge, cache, "m", parallel=1, progress=False)
        assert len(JudgmentCache(tmp_path / "cache.jsonl").entries) == 3
    finally:
        srv.close()


def test_cli_answer_and_judge(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "secret")
    assert main(["mt-bench", "answer", "--model", "tiny-random-llama", "--limit", "8", "--max-new-tokens", "8",
                 "--device", "cpu", "--no-progress", "--output-dir", str(tmp_path / "a")]) == 0
    answers = [json.loads(x) for x in (tmp_path / "a" / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 8 and set(answers[0]) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
    assert all(len(a["choices"][0]["turns"]) == 2 for a in answers)
    args = ["mt-bench", "judge", "--answers", str(tmp_path / "a" / "answers.jsonl"), "--judge", "openai:gpt-4",
            "--judge-base-url", server.url, "--judge-api-key-env", "JUDGE_KEY", "--cache", str(tmp_path / "c.jsonl"),
            "--no-progress", "--output-dir", str(tmp_path / "j")]
    assert main(args) == 0
    result = json.loads((tmp_path / "j" / "mt_bench.json").read_text())
    assert result["n_judgments"] == 16 and result["judge_calls"] == 16 and result["per_turn"]
    assert set(result["per_category"]) <= set(CATEGORIES)
    assert main(args) == 0
    assert json.loads((tmp_path / "j" / "mt_bench.json").read_text())["judge_calls"] == 0
    judgments = [json.loads(x) for x in (tmp_path / "j" / "judgments.jsonl").read_text().splitlines()]
    assert {"question_id", "model", "judge", "user_prompt", "judgment", "score", "turn", "tstamp"} <= set(judgments[0])


def test_cli_unreachable_judge_is_one_line(tmp_path, capsys):
    bench = load_bench("offline")
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in _answers(bench, 1)))
    code = main(["mt-bench", "judge", "--answers", str(path), "--judge", "openai:gpt-4", "--judge-base-url",
                 "http://127.0.0.1:9/v1", "--retries", "0", "--cache", str(tmp_path / "c.jsonl"), "--no-progress",
                 "--output-dir", str(tmp_path / "j")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "http://127.0.0.1:9/v1" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "j").exists()


def test_openai_judge_without_a_key_is_refused_before_any_call(tmp_path, capsys, monkeypatch):
    """OpenAI's endpoint with no key: one line at once (it used to try the endpoint 6 times over 31 s), no judge
    built, nothing written, exit 2. A custom --judge-base-url may need no key: not refused for that."""
    from lisa_bench.evaluation.mt_bench import judge as judge_module

    def no_call(*args, **kwargs):
        raise AssertionError("the judge endpoint was to be called")

    monkeypatch.setattr(judge_module.OpenAIJudge, "__init__", no_call)
    monkeypatch.setattr(judge_module.OpenAIJudge, "complete", no_call)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("EMPTY_KEY", "")
    bench = load_bench("offline")
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in _answers(bench, 1)))
    args = ["mt-bench", "judge", "--answers", str(path), "--judge", "openai:gpt-4", "--cache",
            str(tmp_path / "c.jsonl"), "--no-progress", "--output-dir", str(tmp_path / "j")]
    for more, env in (([], "$OPENAI_API_KEY"), (["--judge-api-key-env", "EMPTY_KEY"], "$EMPTY_KEY")):
        assert main(args + more) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "judge 'openai:gpt-4' calls https://api.openai.com/v1, which needs an " \
            f"API key, and {env} is not set" in err and "--judge-base-url" in err, err
        assert not (tmp_path / "j").exists() and not (tmp_path / "c.jsonl").exists()
    with pytest.raises(AssertionError, match="endpoint was to be called"):  # a local server: its key is not asked
        main(args + ["--judge-base-url", "http://127.0.0.1:9/v1"])


def test_answer_file_must_match_questions(tmp_path, capsys):
    path = tmp_path / "answers.jsonl"
    path.write_text(json.dumps({"question_id": 4242, "model_id": "m", "choices": [{"turns": ["a", "b"]}]}) + "\n")
    assert main(["mt-bench", "judge", "--answers", str(path), "--output-dir", str(tmp_path / "j")]) == 2
    assert "question_id 4242, which is not in the question set" in capsys.readouterr().err


def test_hf_judge_expected_rating_never_fails(tmp_path):
    from lisa_bench.evaluation.mt_bench.judge import HFJudge

    bench = load_bench("offline")
    judge = HFJudge("tiny-random-llama", expected_rating=True)
    rows, calls = judge_answers(bench, _answers(bench, 2), judge, JudgmentCache(tmp_path / "c.jsonl"), "m",
                                progress=False)
    assert calls == 4 and all(1.0 <= r["score"] <= 10.0 for r in rows)


def test_limit_spreads_over_categories():
    from lisa_bench.evaluation.mt_bench.cli import spread_over_categories

    questions = load_bench("offline").questions
    picked = spread_over_categories(questions, 8)
    assert len(picked) == 8 and {q["category"] for q in picked} == set(CATEGORIES)
    assert spread_over_categories(questions, 100) == sorted(questions, key=lambda q: (questions.index(q) % 2,
                                                                                     questions.index(q)))


def test_category_temperatures():
    assert TEMPERATURE["writing"] == TEMPERATURE["roleplay"] == 0.7
    assert TEMPERATURE["math"] == TEMPERATURE["coding"] == TEMPERATURE["reasoning"] == TEMPERATURE["extraction"] == 0
    assert TEMPERATURE["stem"] == TEMPERATURE["humanities"] == 0.1


def _greedy_questions(n):
    bench = load_bench("offline")
    return [q for q in bench.questions if TEMPERATURE[q["category"]] == 0.0][:n]


@pytest.mark.parametrize("model_name", ["tiny-random-llama", pytest.param("smollm2-135m", marks=pytest.mark.slow)])
def test_batched_greedy_answers_equal_one_at_a_time(model_name):
    """Left-padded batches with per-row stopping give the greedy answers one question at a time gives."""
    from lisa_bench.evaluation.mt_bench.answer import generate_answers
    from lisa_bench.models import load_model

    loaded = load_model(model_name)
    model = loaded.model.eval()
    tiny = model_name == "tiny-random-llama"
    questions, tokens = _greedy_questions(8 if tiny else 4), 24 if tiny else 12
    one = generate_answers(model, loaded.tokenizer, questions, "m", tokens, progress=False, batch_size=1)
    batched = generate_answers(model, loaded.tokenizer, questions, "m", tokens, progress=False, batch_size=4)
    assert [r["choices"][0]["turns"] for r in batched] == [r["choices"][0]["turns"] for r in one]
    assert [r["question_id"] for r in batched] == [q["question_id"] for q in questions]
    assert all(len(r["choices"][0]["turns"]) == 2 for r in batched)
