"""The simulated world, generated once from the seed: categories, products and users.

Everything is a numpy column indexed by position; ids are REES46-like int64s.
Products are stored grouped by category so that popularity-weighted sampling
within a category is one ``searchsorted`` over a blocked cumulative table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from freshcart.simulator.config import SimulationConfig
from freshcart.simulator.vocab import BRANDS, CATEGORY_MEDIANS, GENERIC_BRANDS

CATEGORY_ID_BASE = 2_053_013_552_226_107_603
PRODUCT_ID_BASE = 1_000_000
USER_ID_BASE = 500_000_000
MAX_PREFERENCES = 4
NULL_CATEGORY_CODE_SHARE = 0.15
NULL_BRAND_SHARE = 0.14
PRODUCT_ZIPF_EXPONENT = 1.05
CATEGORY_ZIPF_EXPONENT = 0.9
PRICE_SPREAD = 0.6  # std of log(price / category median) across products
ACTIVITY_BUYER_CORRELATION = 0.4  # keen buyers visit somewhat more often
WORLD_STREAM = 1


@dataclass(frozen=True)
class World:
    """Categories, products (regular first, then the drift's new ones) and users (humans, then bots)."""

    category_ids: np.ndarray
    category_codes: tuple[str, ...]
    category_weights: np.ndarray
    shifted_weights: np.ndarray
    category_median: np.ndarray
    product_ids: np.ndarray
    product_category: np.ndarray
    product_price: np.ndarray
    product_log_offset: np.ndarray
    product_appeal: np.ndarray
    product_codes: pa.Array
    product_brands: pa.Array
    regular_products: int
    category_offsets: np.ndarray
    category_cdf: np.ndarray
    new_product_cdf: np.ndarray
    user_ids: np.ndarray
    humans: int
    user_pref_categories: np.ndarray
    user_pref_weights: np.ndarray
    user_price_level: np.ndarray
    user_buyer: np.ndarray
    user_activity_cdf: np.ndarray

    @property
    def new_product_ids(self) -> np.ndarray:
        """Ids of the products that only exist from the drift on."""
        return self.product_ids[self.regular_products:]

    @property
    def bot_user_ids(self) -> np.ndarray:
        """Ids of the dedicated bot users."""
        return self.user_ids[self.humans:]


def _zipf_weights(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Heavy-tailed weights 1/rank**exponent in a random order, summing to 1."""
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    weights = weights[rng.permutation(n)]
    return weights / weights.sum()


def _unique_ids(rng: np.random.Generator, base: int, n: int, mean_step: int) -> np.ndarray:
    """``n`` distinct increasing int64 ids from ``base`` on, in a random order."""
    steps = rng.integers(1, 2 * mean_step, size=n, dtype=np.int64)
    return (base + np.cumsum(steps))[rng.permutation(n)]


def _category_codes(rng: np.random.Generator, count: int) -> tuple[str, ...]:
    picks = rng.permutation(len(CATEGORY_MEDIANS) * (count // len(CATEGORY_MEDIANS) + 1))[:count]
    codes = []
    for pick in picks:
        base, line = CATEGORY_MEDIANS[pick % len(CATEGORY_MEDIANS)][0], pick // len(CATEGORY_MEDIANS)
        codes.append(base if line == 0 else f"{base}.line{line}")
    return tuple(codes)


def _median_of(code: str) -> float:
    base = ".".join(part for part in code.split(".") if not part.startswith("line"))
    return dict(CATEGORY_MEDIANS)[base]


def _brand_lists(
    rng: np.random.Generator, codes: tuple[str, ...]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Brand vocabulary, and per category a short brand list (indices) with Zipf cumulative weights."""
    vocabulary = sorted({name for pool in BRANDS.values() for name in pool} | set(GENERIC_BRANDS))
    position = {name: i for i, name in enumerate(vocabulary)}
    table = np.full((len(codes), 10), -1, dtype=np.int32)
    cdf = np.ones((len(codes), 10))
    for c, code in enumerate(codes):
        pool = BRANDS.get(code.split(".")[0], GENERIC_BRANDS)
        size = int(rng.integers(min(3, len(pool)), min(10, len(pool)) + 1))
        picks = rng.choice(len(pool), size=size, replace=False)
        table[c, :size] = [position[pool[p]] for p in picks]
        weights = 1.0 / np.arange(1, size + 1)
        cdf[c, :size] = np.cumsum(weights) / weights.sum()
    return vocabulary, table, cdf


def _product_traits(
    rng: np.random.Generator, category: np.ndarray, medians: np.ndarray, brand_table: np.ndarray,
    brand_cdf: np.ndarray, appeal_shift: float,
) -> dict[str, np.ndarray]:
    """Price (lognormal around the category median), appeal, null code flags and brands."""
    n = int(category.shape[0])
    log_offset = rng.normal(0.0, PRICE_SPREAD, n)
    price = np.maximum(np.round(medians[category] * np.exp(log_offset), 2), 0.01)
    slot = (rng.random(n)[:, None] >= brand_cdf[category]).sum(axis=1)
    brand = brand_table[category, np.minimum(slot, brand_table.shape[1] - 1)]
    brand_null = (rng.random(n) < NULL_BRAND_SHARE) | (brand < 0)
    return {
        "price": price,
        "log_offset": np.log(price / medians[category]),
        "appeal": rng.normal(appeal_shift, 0.7, n),
        "code_null": rng.random(n) < NULL_CATEGORY_CODE_SHARE,
        "brand": np.where(brand_null, -1, brand),
    }


def _blocked_cdf(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """Zipf popularity within each category as one table: category c's block runs over (c, c+1]."""
    category = np.repeat(np.arange(counts.shape[0]), counts)
    within = np.concatenate([_zipf_weights(rng, int(k), PRODUCT_ZIPF_EXPONENT) for k in counts])
    cumulative = np.cumsum(within)
    ends = np.cumsum(counts) - 1
    block_start = np.repeat(np.concatenate([[0.0], cumulative[ends[:-1]]]), counts)
    cdf = category + (cumulative - block_start)
    cdf[ends] = np.arange(1, counts.shape[0] + 1)  # each block ends exactly at c+1
    return cdf


def build_world(config: SimulationConfig) -> World:
    """Generate the world of ``config`` (deterministic in the seed).

    The drift's new products come from their own random stream, so turning drift
    on leaves the rest of the world unchanged.
    """
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, WORLD_STREAM]))
    new_rng = np.random.default_rng(np.random.SeedSequence([config.seed, WORLD_STREAM, 1]))
    n_cat, n_regular, n_new = config.categories, config.products, config.drift.new_products

    codes = _category_codes(rng, n_cat)
    category_ids = _unique_ids(rng, CATEGORY_ID_BASE, n_cat, 2**32)
    category_weights = _zipf_weights(rng, n_cat, CATEGORY_ZIPF_EXPONENT)
    by_rank = np.argsort(-category_weights, kind="stable")
    shifted_weights = np.empty(n_cat)
    shifted_weights[by_rank] = category_weights[by_rank[::-1]]  # the least popular lead
    medians = np.array([_median_of(code) for code in codes]) * np.exp(rng.normal(0.0, 0.15, n_cat))
    vocabulary, brand_table, brand_cdf = _brand_lists(rng, codes)

    # Regular products grouped by category (more products in popular categories), then new ones.
    share = category_weights**0.6 / np.sum(category_weights**0.6)
    counts = 1 + rng.multinomial(n_regular - n_cat, share)
    regular_category = np.repeat(np.arange(n_cat, dtype=np.int32), counts)
    category_cdf = _blocked_cdf(rng, counts)
    regular = _product_traits(rng, regular_category, medians, brand_table, brand_cdf, 0.0)
    regular_ids = _unique_ids(rng, PRODUCT_ID_BASE, n_regular, 400)

    new_category = new_rng.choice(n_cat, size=n_new, p=category_weights).astype(np.int32)
    new = _product_traits(new_rng, new_category, medians, brand_table, brand_cdf, 0.2)
    new_ids = _unique_ids(new_rng, int(regular_ids.max()) + 1_000_000, n_new, 400)
    new_product_cdf = np.cumsum(_zipf_weights(new_rng, n_new, 1.0)) if n_new else np.zeros(0)
    if n_new:
        new_product_cdf[-1] = 1.0
    product_category = np.concatenate([regular_category, new_category])
    traits = {name: np.concatenate([regular[name], new[name]]) for name in regular}
    product_codes = pa.array(codes).take(pa.array(product_category, mask=traits["code_null"]))
    brand = traits["brand"]
    product_brands = pa.array(vocabulary).take(pa.array(np.maximum(brand, 0), mask=brand < 0))

    # Users: a few preferred categories (by popularity, with weights), a price level,
    # a buyer propensity and an activity level; then a small dedicated set of bots.
    n_users, n_bots = config.users, max(5, config.users // 500)
    slots = 1 + rng.binomial(MAX_PREFERENCES - 1, 0.4, size=n_users)
    preferred = np.searchsorted(
        np.cumsum(category_weights), rng.random((n_users, MAX_PREFERENCES)) * (1 - 1e-12)
    ).astype(np.int32)
    weights = rng.gamma(1.0, 1.0, (n_users, MAX_PREFERENCES))
    weights[np.arange(MAX_PREFERENCES)[None, :] >= slots[:, None]] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    human_ids = _unique_ids(rng, USER_ID_BASE, n_users, 30)
    bot_ids = _unique_ids(rng, int(human_ids.max()) + 10_000_000, n_bots, 30)
    buyer = rng.normal(0.0, 1.0, n_users)
    rho = ACTIVITY_BUYER_CORRELATION
    activity = np.exp(0.7 * (rho * buyer + np.sqrt(1 - rho**2) * rng.normal(0.0, 1.0, n_users)))
    activity_cdf = np.cumsum(activity)

    return World(
        category_ids=category_ids,
        category_codes=codes,
        category_weights=category_weights,
        shifted_weights=shifted_weights / shifted_weights.sum(),
        category_median=medians,
        product_ids=np.concatenate([regular_ids, new_ids]),
        product_category=product_category,
        product_price=traits["price"],
        product_log_offset=traits["log_offset"],
        product_appeal=traits["appeal"],
        product_codes=product_codes,
        product_brands=product_brands,
        regular_products=n_regular,
        category_offsets=np.concatenate([[0], np.cumsum(counts)]),
        category_cdf=category_cdf,
        new_product_cdf=new_product_cdf,
        user_ids=np.concatenate([human_ids, bot_ids]),
        humans=n_users,
        user_pref_categories=preferred,
        user_pref_weights=weights,
        user_price_level=rng.normal(0.0, 0.45, n_users),
        user_buyer=buyer,
        user_activity_cdf=activity_cdf / activity_cdf[-1],
    )
