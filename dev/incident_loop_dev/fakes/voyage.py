"""A fake Voyage AI embeddings API: `POST /v1/embeddings` with a bearer key, the real request and response
JSON, at most 1,000 inputs per request, and deterministic embeddings (a hash of model, input type and text).

    with FakeVoyage() as voyage:
        settings: VOYAGE_BASE_URL=voyage.url, the key "pa-fake" behind VOYAGE_API_KEY_PARAMETER
        then voyage.requests (successful embedding requests), voyage.inputs, voyage.batch_sizes
"""

from __future__ import annotations

import hashlib

from incident_loop_dev.fakes.server import Call, FakeServer, Reply, reply_json

MAX_INPUTS = 1000


def embedding(model: str, input_type: str | None, text: str, dimensions: int = 8) -> list[float]:
    """The vector the fake returns for one text: numbers in [-1, 1] from a hash of the three."""
    seed = hashlib.sha256(f"{model}\x1f{input_type}\x1f{text}".encode()).digest()
    while len(seed) < dimensions * 2:
        seed += hashlib.sha256(seed).digest()
    return [round(int.from_bytes(seed[2 * i:2 * i + 2], "big") / 32767.5 - 1, 6) for i in range(dimensions)]


class FakeVoyage(FakeServer):
    """Voyage's /v1/embeddings."""

    def __init__(self, api_key: str = "pa-fake", dimensions: int = 8) -> None:
        super().__init__()
        self.api_key, self.dimensions = api_key, dimensions
        self.requests = 0
        self.inputs = 0
        self.batch_sizes: list[int] = []

    def handle(self, call: Call) -> Reply:
        if call.method != "POST" or call.path != "/v1/embeddings":
            return reply_json(404, {"detail": "Not Found"})
        if call.headers.get("authorization") != f"Bearer {self.api_key}":
            return reply_json(401, {"detail": "Provided API key is invalid."})
        try:
            body = call.json()
        except ValueError:
            return reply_json(400, {"detail": "Request body is not valid JSON."})
        texts, model, input_type = body.get("input"), body.get("model"), body.get("input_type")
        if isinstance(texts, str):
            texts = [texts]
        if not model or not isinstance(texts, list) or not texts:
            return reply_json(400, {"detail": "model and a non-empty input are required."})
        if len(texts) > MAX_INPUTS:
            return reply_json(400, {"detail": f"The maximum length of the input list is {MAX_INPUTS}."})
        if input_type not in (None, "query", "document"):
            return reply_json(400, {"detail": "input_type must be query, document or null."})
        with self.lock:
            self.requests += 1
            self.inputs += len(texts)
            self.batch_sizes.append(len(texts))
        data = [{"object": "embedding", "embedding": embedding(model, input_type, t, self.dimensions), "index": i}
                for i, t in enumerate(texts)]
        tokens = sum(len(str(t).split()) + 1 for t in texts)
        return reply_json(200, {"object": "list", "data": data, "model": model, "usage": {"total_tokens": tokens}})
