"""Request and response models of the scoring service (the JSON bodies themselves, not wrapped).

Bad input is refused with pydantic's errors, rewritten so that each names the field,
the value it got and what to send instead (``product_ids=[...] (501 items): ...;
send 1 to 500 product ids``). Unknown fields are refused too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

MAX_ID = 2**63 - 1
MAX_PRODUCTS = 500
MAX_K = 100
MAX_EXPLAIN_PRODUCTS = 100
ProductId = Annotated[int, Field(ge=0, le=MAX_ID)]
HINTS = {
    "user_id": "send the shopper's id, a whole number from 0 to 2^63-1",
    "product_ids": "send a list of 1 to {max_products} product ids, whole numbers from 0 to 2^63-1",
    "event_time": "send an ISO 8601 time such as 2025-01-08T12:00:00Z, or leave it out for now",
    "k": f"send a whole number from 1 to {MAX_K}, or leave it out for 10",
    "exclude_purchased_days": "send a whole number of days from 0 to 365, or leave it out for 7",
    "explain": "send true or false",
    "top": "send a whole number from 1 to 50, or leave it out for 5",
}


def _shown(value: Any) -> str:
    text = repr(value)
    if isinstance(value, list) and len(text) > 60:
        return f"{text[:50]}...] ({len(value)} items)"
    return text if len(text) <= 80 else text[:77] + "..."


def _with_values(exc: ValidationError, title: str, max_products: int) -> ValidationError:
    details: list[InitErrorDetails] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        field = ".".join(str(p) for p in loc) or "body"
        top = str(loc[0]) if loc else "body"
        value = error.get("input")
        if error["type"] == "extra_forbidden":
            hint = f"leave it out (fields: {', '.join(HINTS_FOR.get(title, HINTS))})"
        elif error["type"] in ("model_type", "model_attributes_type"):
            hint = "send a JSON object with the request's fields"
        else:
            hint = HINTS.get(top, "see /docs").format(max_products=max_products)
        shown = f"{field} is missing" if error["type"] == "missing" else f"{field}={_shown(value)}"
        message = f"{shown}: {error['msg']}; {hint}"
        details.append(InitErrorDetails(type=PydanticCustomError("invalid_field", message), loc=loc, input=value))
    return ValidationError.from_exception_data(title, details)


class Request(BaseModel):
    """Base of the request models: strict fields, errors that name field and value."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="wrap")
    @classmethod
    def _name_the_value(cls, data: Any, handler: Any) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            raise _with_values(exc, cls.__name__.removeprefix("Input"), MAX_PRODUCTS) from None


class PredictRequest(Request):
    """Score products for a shopper: one purchase probability per product."""

    user_id: int = Field(ge=0, le=MAX_ID, description="The shopper.")
    product_ids: list[ProductId] = Field(min_length=1, max_length=MAX_PRODUCTS,
                                         description=f"The products to score, 1 to {MAX_PRODUCTS}.")
    event_time: datetime | None = Field(None, description="The time to score at (default: now), UTC.")
    explain: bool = Field(False, description="Also return each product's top feature contributions.")


class RecommendRequest(Request):
    """The top-k products for a shopper, ranked by the ranker champion or else the propensity champion."""

    user_id: int = Field(ge=0, le=MAX_ID, description="The shopper.")
    k: int = Field(10, ge=1, le=MAX_K, description=f"How many products, 1 to {MAX_K}.")
    exclude_purchased_days: int | None = Field(
        None, ge=0, le=365, description="Leave out products the shopper bought in this many days (default 7).")
    event_time: datetime | None = Field(None, description="The time to recommend at (default: now), UTC.")


class ExplainRequest(Request):
    """Top feature contributions (XGBoost) or attention weights (the attention model) per product."""

    user_id: int = Field(ge=0, le=MAX_ID, description="The shopper.")
    product_ids: list[ProductId] = Field(min_length=1, max_length=MAX_EXPLAIN_PRODUCTS,
                                         description=f"The products to explain, 1 to {MAX_EXPLAIN_PRODUCTS}.")
    top: int = Field(5, ge=1, le=50, description="Contributions per product.")
    event_time: datetime | None = Field(None, description="The time to score at (default: now), UTC.")


HINTS_FOR = {"PredictRequest": list(PredictRequest.model_fields), "RecommendRequest": list(RecommendRequest.model_fields),
             "ExplainRequest": list(ExplainRequest.model_fields)}


class ModelRef(BaseModel):
    name: str
    version: str
    alias: str
    type: str
    run_id: str


class Freshness(BaseModel):
    """How old the features behind the scores were."""

    user_features_time: datetime | None = Field(description="Newest event time behind the shopper's features.")
    product_features_time: datetime | None = Field(description="Newest event time behind the products' features.")
    missing_views: list[str] = Field(description="Feature views with no row for this request.")


class Timing(BaseModel):
    features_ms: float = Field(description="Reading and assembling the features.")
    model_ms: float = Field(description="Scoring (and explaining) with the model.")
    total_ms: float


class Contribution(BaseModel):
    feature: str
    contribution: float
    value: float | None = None
    product_id: int | None = None
    position_from_newest: int | None = None


class Explanation(BaseModel):
    kind: str = Field(description="tree_shap (XGBoost, log-odds) or attention (weights over recent products).")
    bias: float | None = None
    contributions: list[Contribution]


class ProductScore(BaseModel):
    product_id: int
    score: float = Field(description="Probability of a purchase of the product within the horizon.")
    cold_start: bool = Field(description="No online features for this product.")
    known: bool = Field(description="The product is in the catalogue (its category is known).")
    explanation: Explanation | None = None


class PredictResponse(BaseModel):
    request_id: str
    user_id: int
    cold_start: bool = Field(description="No online features for this shopper (the cold-start path).")
    model: ModelRef
    scores: list[ProductScore]
    freshness: Freshness
    timing: Timing


class RecommendedItem(BaseModel):
    rank: int
    product_id: int
    score: float = Field(description="The propensity model's purchase probability.")
    ranker_score: float | None = Field(None, description="The learning-to-rank model's score, by which the items "
                                                         "are ranked when it ranks (null: ranked by `score`).")
    source: str = Field(description="The candidate source that proposed it first.")
    sources: list[str]


class RecommendResponse(BaseModel):
    request_id: str
    user_id: int
    cold_start: bool
    model: ModelRef
    ranker: ModelRef = Field(description="The model that ranked the items: the learning-to-rank champion "
                                         "(freshcart-ranker) or the propensity model itself.")
    items: list[RecommendedItem]
    candidates: int = Field(description="Candidates ranked.")
    freshness: Freshness
    timing: Timing
