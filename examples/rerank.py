"""Load an LLM rerank endpoint with the run's model, batch size and GPU pool.

The run's schema is ``examples/schema.json`` (``model``, ``batch_size``, ``gpu_model``)::

    python examples/target.py --port 8081 &
    perfx-platform new-run --schema examples/schema.json --host http://127.0.0.1:8081
    perfx -f examples/rerank.py --run-id RUN_ID --model bge-reranker-v2 --gpu_model H100 \\
        --batch_size 16 --headless -u 4 -t 30s

The arguments are read in ``on_start``, not at import: the plugin sets them in Locust's
``init`` (on a worker, when the test starts), after this file was imported. A response
that scores another batch, model or GPU pool than asked counts as a failure, so the
run's verdict covers what was served, not only that something was.
"""

from __future__ import annotations

from locust import FastHttpUser, constant_throughput, task

QUERY = "how do I pin a load-test plugin to a release?"


class Reranker(FastHttpUser):
    wait_time = constant_throughput(20)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.model: str = options.model
        self.gpu_model: str = options.gpu_model
        self.documents = [f"passage {i} about pinning releases" for i in range(options.batch_size)]

    @task
    def rerank(self) -> None:
        body = {"model": self.model, "query": QUERY, "documents": self.documents}
        headers = {"X-GPU-Model": self.gpu_model}
        with self.client.post(
            "/rerank", json=body, headers=headers, catch_response=True
        ) as response:
            answer = response.json() if response.status_code == 200 else {}
            if len(answer.get("scores", ())) != len(self.documents):
                response.failure(f"expected {len(self.documents)} scores, got {answer!r:.80}")
            elif (answer["model"], answer["gpu_model"]) != (self.model, self.gpu_model):
                response.failure(f"served by {answer['model']} on {answer['gpu_model']}")
