"""voyage_embed: embeddings from Voyage AI (`POST {VOYAGE_BASE_URL}/v1/embeddings`), batched and cached.

    {"texts": ["disk full on node-3", "..."], "input_type": "document"}   -> {"embeddings": [[...], ...], ...}

* Batches respect the API's limits: at most 1,000 inputs and the model's total-token cap per request
  (TOKEN_CAPS). Tokens are estimated from above: UTF-8 bytes + 2 per text (a byte-level tokenizer never
  makes more tokens than bytes; the 2 cover special tokens), so a batch can never exceed the cap.
* Each embedding is cached in the kv table (reserved namespace `_voyage_cache`, 30 days) under
  sha256(model, input_type, text), so a repeat, or a replay, costs no request.
* The API key comes from VOYAGE_API_KEY_PARAMETER (SSM or Secrets Manager) through Powertools Parameters.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from incident_loop.observability import logger
from incident_loop.skills.base import ExternalSkill, SkillContext
from incident_loop.skills.errors import ExternalError, SizeLimitExceeded, SkillError
from incident_loop.skills.hashing import canonical_json
from incident_loop.skills.kvtable import MAX_VALUE_BYTES
from incident_loop.skills.transport import HttpRequest

CACHE = "_voyage_cache"
CACHE_TTL_S = 30 * 24 * 3600
MAX_INPUTS_PER_REQUEST = 1000
MAX_TEXTS = 10_000  # per call: a larger job belongs in several workflow steps
MAX_TOTAL_BYTES = 1024 * 1024  # of text per call, for the same reason
BUDGET_REQUESTS = 4  # call_budget_s plans for this many requests; a longer call risks only a repeated request
MAX_TEXT_BYTES = 128 * 1024  # the models read 32K tokens at most and truncate the rest
# An answer is read up to this much per embedding (a vector of any model's 2,048 dimensions is about 50 KB of
# JSON; the transport's 1 MiB default cut an answer of 50 vectors of 1,024 off, so no larger batch ever parsed).
MAX_ANSWER_BYTES_PER_TEXT = 64 * 1024
# A call's embeddings as JSON, at most: the result is recorded in the op and returned by GET /workflows/{id}/ops/{n}
# (a Lambda answer is at most 6 MB). About 200 vectors of 1,024 dimensions; more texts belong in more steps.
MAX_OUTPUT_BYTES = 4 * 1024 * 1024
# Total tokens per request, from Voyage's embeddings API reference; an unknown model gets the smallest.
TOKEN_CAPS: dict[str, int] = {
    "voyage-3.5-lite": 1_000_000, "voyage-3-lite": 1_000_000,
    "voyage-3.5": 320_000, "voyage-3": 320_000, "voyage-2": 320_000,
    "voyage-3-large": 120_000, "voyage-code-3": 120_000, "voyage-finance-2": 120_000, "voyage-law-2": 120_000,
    "voyage-multilingual-2": 120_000, "voyage-large-2": 120_000, "voyage-large-2-instruct": 120_000,
    "voyage-code-2": 120_000,
}
DEFAULT_TOKEN_CAP = 120_000


class VoyageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(min_length=1, max_length=MAX_TEXTS)
    model: str | None = Field(default=None, min_length=1, max_length=64)
    input_type: Literal["query", "document"] | None = None


class VoyageOutput(BaseModel):
    model: str
    input_type: str | None
    dimensions: int
    embeddings: list[list[float]]


def estimate_tokens(text: str) -> int:
    """An upper bound on the tokens `text` costs."""
    return len(text.encode("utf-8")) + 2


def batches(texts: list[str], token_cap: int, max_inputs: int = MAX_INPUTS_PER_REQUEST) -> list[list[str]]:
    """`texts` in order, cut into requests of at most `max_inputs` texts and `token_cap` estimated tokens
    (a single text over the cap goes alone: the API truncates it)."""
    out: list[list[str]] = []
    current: list[str] = []
    tokens = 0
    for text in texts:
        cost = estimate_tokens(text)
        if current and (len(current) >= max_inputs or tokens + cost > token_cap):
            out.append(current)
            current, tokens = [], 0
        current.append(text)
        tokens += cost
    if current:
        out.append(current)
    return out


def cache_key(model: str, input_type: str | None, text: str) -> str:
    """The cache key of one embedding."""
    return hashlib.sha256(canonical_json([model, input_type, text]).encode("utf-8")).hexdigest()


class VoyageEmbedSkill(ExternalSkill):
    """Text embeddings from Voyage AI behind the `voyage` breaker."""

    name: ClassVar[str] = "voyage_embed"
    version: ClassVar[str] = "1.0.0"
    Input: ClassVar[type[BaseModel]] = VoyageInput
    Output: ClassVar[type[BaseModel]] = VoyageOutput
    deterministic: ClassVar[bool] = True  # the same model, input type and texts give the same embeddings

    def parse(self, args: Any) -> BaseModel:
        data = super().parse(args)
        assert isinstance(data, VoyageInput)
        total = 0
        for i, text in enumerate(data.texts):
            size = len(text.encode("utf-8"))
            if size > MAX_TEXT_BYTES:
                raise SizeLimitExceeded(f"texts[{i}] is {size} bytes; the limit is {MAX_TEXT_BYTES}")
            total += size
        if total > MAX_TOTAL_BYTES:
            raise SizeLimitExceeded(f"the texts are {total} bytes together; the limit is {MAX_TOTAL_BYTES}")
        return data

    def call_budget_s(self) -> float:
        return BUDGET_REQUESTS * (super().call_budget_s() - 5.0) + 5.0

    def run(self, data: VoyageInput, ctx: SkillContext) -> VoyageOutput:
        model = data.model or self.settings.voyage_model
        keys = {text: cache_key(model, data.input_type, text) for text in data.texts}
        cached = self.kv.get_many(ctx.tenant_id, CACHE, keys.values())
        vectors = {text: cached[key].value for text, key in keys.items() if key in cached}
        missing = [text for text in keys if text not in vectors]  # unique, in first-seen order
        requests = batches(missing, TOKEN_CAPS.get(model, DEFAULT_TOKEN_CAP)) if missing else []
        for batch in requests:
            fresh = self._embed(model, data.input_type, batch, ctx.key())
            vectors.update(fresh)
            # A vector too large for one kv item (over 64 KiB of JSON) is returned but not cached.
            entries = {keys[t]: v for t, v in fresh.items() if len(canonical_json(v)) <= MAX_VALUE_BYTES}
            self.kv.put_many(ctx.tenant_id, CACHE, entries, ttl_s=CACHE_TTL_S)
        logger.info("voyage embeddings", model=model, texts=len(data.texts), cached=len(keys) - len(missing),
                    requests=len(requests))
        embeddings = [vectors[text] for text in data.texts]
        size = len(canonical_json(embeddings))
        if size > MAX_OUTPUT_BYTES:  # what was fetched is cached: the same texts over more steps cost no request
            raise SizeLimitExceeded(f"the {len(embeddings)} embeddings are {size} bytes of JSON; a call returns at "
                                    f"most {MAX_OUTPUT_BYTES}: embed fewer texts per step")
        return VoyageOutput(model=model, input_type=data.input_type, dimensions=len(embeddings[0]),
                            embeddings=embeddings)

    def _embed(self, model: str, input_type: str | None, texts: list[str], key: str | None) -> dict[str, Any]:
        parameter = self.settings.voyage_api_key_parameter
        if not parameter:
            raise SkillError("voyage_embed needs an API key: set VOYAGE_API_KEY_PARAMETER", code="not_configured")
        body = canonical_json({"model": model, "input": texts, "input_type": input_type}).encode("utf-8")
        headers = {"authorization": f"Bearer {self.secret(parameter)}", "content-type": "application/json"}
        url = self.settings.voyage_base_url.rstrip("/") + "/v1/embeddings"
        most = (len(texts) + 1) * MAX_ANSWER_BYTES_PER_TEXT  # one more for the answer's own fields
        answer = self.call("voyage", lambda attempt: HttpRequest("POST", url, headers, body, max_body_bytes=most),
                           key).response
        try:
            data = sorted(answer.json()["data"], key=lambda item: item["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise ExternalError("Voyage answered with an unexpected body", code="voyage_bad_response",
                                retryable=False) from exc
        if len(vectors) != len(texts):
            raise ExternalError(f"Voyage returned {len(vectors)} embeddings for {len(texts)} texts",
                                code="voyage_bad_response", retryable=False)
        return dict(zip(texts, vectors, strict=True))
