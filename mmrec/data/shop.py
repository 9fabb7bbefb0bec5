"""A simulated shop: real product photos, simulated shoppers, known truth.

Real click logs never say *why* a user clicked, so they cannot tell whether a
model failed to read the pictures or whether the pictures simply do not
matter. This benchmark removes that doubt. Its items are real Fashion-MNIST
photos, its shoppers are simulated with tastes we write down, and so every
evaluation can be set beside an oracle that knows the true utilities.

The design makes each modality carry something the other lacks:

* ``shade`` (light/medium/dark) and ``pattern`` (plain/patterned) are measured
  from the pixels and appear **only in the image**; no text mentions them.
* ``brand`` and ``material`` are drawn at random and appear **only in the
  text**; no pixel shows them.
* ``category`` and ``fit`` (slim/wide) appear in both.

Shoppers weigh all six attribute groups, so an ID-only or a one-modality model
leaves utility on the table that a model reading both can collect. On top of
the tastes sit a mild item popularity (so most-popular is a weak but non-zero
baseline), a per-session focus category (a short-term, sequential signal) and,
optionally, changes at a fixed point of the timeline (``shift_at``): an
interest shift (a share of users draw new tastes), a trend (every user's
weight of some attribute groups moves, e.g. looks matter more than labels for
a season) and new items (a share of the catalogue exists only from then on).
They reward models that weight recent history, and they are what the
feedback loop's benchmark measures a fine-tuning job against.

Shade, pattern and fit are binned *within each category* (a third of the
coats are dark, a third of the sandals are dark, ...), so they cannot be
guessed from the category the text states; binned over all items at once they
would largely restate it (sandals are mostly holes, trousers mostly slim).

Everything is drawn from ``np.random.default_rng(seed)``: the same
:class:`ShopConfig` gives the same catalogue and log, byte for byte.

Example:

    from mmrec.data.shop import ShopConfig, generate_shop
    dataset = generate_shop(ShopConfig(num_items=500, num_users=200, num_clicks=5_000))
    dataset.catalogue.texts[0]
    # 'Tamsin wide t-shirt. Wool t-shirt with a wide fit, designed by Tamsin.'
    truth = dataset.ground_truth
    row = 0
    scores = truth.utility(int(dataset.interactions.user[row]),
                           dataset.interactions.timestamp[row],
                           truth.session_focus[row])   # true utility of every item
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from mmrec.data.catalogue import Catalogue
from mmrec.data.dataset import Dataset
from mmrec.data.fashion_mnist import (
    CATEGORY_WORDS,
    CLASS_NAMES,
    NUM_IMAGES,
    fashion_mnist_source,
    load_fashion_mnist,
    photos_outside,
)
from mmrec.data.interactions import Interactions
from mmrec.data.shop_scorers import ShopAttributeScorer, ShopOracle

SHADES: tuple[str, ...] = ("light", "medium", "dark")
PATTERNS: tuple[str, ...] = ("plain", "patterned")
FITS: tuple[str, ...] = ("slim", "wide")
BRANDS: tuple[str, ...] = (
    "Nordvik", "Alderline", "Kestrel", "Moreau", "Sunfield", "Tamsin", "Oakhurst", "Veloce")
MATERIALS: tuple[str, ...] = ("cotton", "wool", "leather", "denim", "linen", "polyester")

ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "category": CLASS_NAMES, "shade": SHADES, "pattern": PATTERNS,
    "fit": FITS, "brand": BRANDS, "material": MATERIALS}
"""Every attribute group and its values, in the order tastes are laid out."""

ATTRIBUTES: tuple[str, ...] = tuple(ATTRIBUTE_VALUES)
IMAGE_ONLY_ATTRIBUTES: tuple[str, ...] = ("shade", "pattern")
TEXT_ONLY_ATTRIBUTES: tuple[str, ...] = ("brand", "material")
SHARED_ATTRIBUTES: tuple[str, ...] = ("category", "fit")

# Column offset of each group in a flat taste vector of TASTE_SIZE values.
_SIZES = np.array([len(v) for v in ATTRIBUTE_VALUES.values()])
ATTRIBUTE_OFFSETS: dict[str, int] = dict(zip(
    ATTRIBUTES, np.r_[0, np.cumsum(_SIZES)[:-1]].tolist()))
TASTE_SIZE = int(_SIZES.sum())

# Words the text uses for fit; shade and pattern have no words on purpose.
FIT_WORDS: tuple[tuple[str, ...], ...] = (
    ("slim", "narrow", "fitted"), ("wide", "loose", "relaxed"))
_TITLE_TEMPLATES = (
    "{brand} {fit} {category}",
    "{Fit} {category} by {brand}",
    "{brand} {category}, {fit} cut",
)
_DESCRIPTION_TEMPLATES = (
    "{Material} {category} from {brand}, cut {fit} for everyday wear.",
    "Made of {material}, {this} {fit} {category} {belongs} to the {brand} range.",
    "{brand} makes {this} {category} in {material}, with a {fit} shape.",
    "{Material} {category} with a {fit} fit, designed by {brand}.",
)
_PLURAL_CATEGORIES = frozenset({"trousers", "sandals", "sneakers", "ankle boots"})

_FOREGROUND_THRESHOLD = 30   # pixel values above this are product, not background
MIN_SESSION_GAP_S = 3600     # at least an hour between one session's end and the next
_MEAN_CLICK_GAP_S = 60.0     # within a session, clicks come about a minute apart
_MAX_CLICK_GAP_S = 1800


@dataclasses.dataclass(frozen=True)
class ShopConfig:
    """How big the shop is and how its shoppers behave.

    The defaults give a benchmark that trains in minutes on a CPU and leaves
    room between baselines and the ceiling. Scoring each user's last click
    (seen items excluded), the oracle has it in its top 10 about 32% of the
    time, most-popular about 1%; an oracle blind to the image-only groups
    falls to about 13%, one blind to the text-only groups to about 9%.

    Example:

        config = ShopConfig(num_items=500, num_users=200, num_clicks=5_000,
                            shift_share=0.3)   # 30% of users change taste
        dataset = generate_shop(config)

    Attributes:
      num_items: products, sampled from the 70,000 Fashion-MNIST photos
        (10..70000; fewer than ``2 * min_clicks_per_user`` cannot give every
        user distinct clicks).
      num_users: simulated shoppers.
      num_clicks: target total of clicks; the result is within a few percent
        (a user never clicks more than half the catalogue).
      seed: everything is drawn from ``np.random.default_rng(seed)``.
      shift_share: share of users, in [0, 1], whose tastes are redrawn at
        ``shift_at``; 0 means tastes never change.
      shift_at: where in the timeline, as a fraction in [0, 1] of the time
        span, shifted users change taste, the trend sets in and new items
        appear.
      trend_weights: from ``shift_at`` on, every user's taste for each
        attribute group is multiplied by these, in ATTRIBUTES order; all 1.0
        (the default) is no trend. ``(1, 3, 3, 1, 1/3, 1/3)`` is a season where
        looks (shade, pattern: image only) matter three times as much and
        labels (brand, material: text only) a third as much.
      new_item_share: share of the items, in [0, 1), that exist only from
        ``shift_at`` on: nobody clicks them before (``ShopGroundTruth.new_items``).
      mean_session_length: mean clicks per session (>= 1); sessions have
        ``1 + Poisson(mean - 1)`` clicks.
      temperature: softness of the click choice; a user picks items with
        probability ``softmax(utility / temperature)``. At 0.5 the clicked
        item is typically in the top 1% of the catalogue by true utility, yet
        the oracle's top 10 holds the next click only a third of the time
        (0.7 gives about 20%, 1.0 about 10%): learnable, but noisy.
      focus_bonus: utility added, within a session, to items of the
        session's focus category (drawn from the user's category taste).
      popularity_scale: weight of the Zipf-like log-popularity,
        ``-popularity_scale * log(rank)``; kept small beside the tastes.
      taste_spread: standard deviation, across items, of each attribute
        group's contribution to utility, in ATTRIBUTES order (category,
        shade, pattern, fit, brand, material). The default gives image-only
        and text-only groups similar weight; set a group to 0 to switch it off.
      min_clicks_per_user: every user has at least this many clicks.
      start_time: the first possible timestamp, Unix seconds.
      time_span_days: the length of the timeline.
      picture_size: side of the catalogue's pictures: the 28x28 photos are
        resized (bilinear) to this, so a benchmark can hold pictures of the
        size a user's own catalogue has (64 for 64x64) without changing
        what the shoppers see (attributes are read from the 28x28 photos).
      picture_channels: 1 keeps the photos grey; 3 gives each item an RGB
        picture, its grey photo tinted with a colour drawn per item (the
        colour is not an attribute shoppers care about).
    """

    num_items: int = 5000
    num_users: int = 2000
    num_clicks: int = 100_000
    seed: int = 0
    shift_share: float = 0.0
    shift_at: float = 0.8
    trend_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    new_item_share: float = 0.0
    mean_session_length: float = 5.0
    temperature: float = 0.5
    focus_bonus: float = 1.0
    popularity_scale: float = 0.25
    taste_spread: tuple[float, ...] = (1.0, 0.8, 0.8, 0.6, 0.8, 0.7)
    min_clicks_per_user: int = 5
    start_time: int = 1_700_000_000
    time_span_days: float = 180.0
    picture_size: int = 28
    picture_channels: int = 1

    def __post_init__(self) -> None:
        if self.min_clicks_per_user < 1:
            raise ValueError(f"min_clicks_per_user must be >= 1; got {self.min_clicks_per_user}")
        low = 2 * self.min_clicks_per_user
        if not low <= self.num_items <= NUM_IMAGES:
            raise ValueError(f"num_items must be in {low}..{NUM_IMAGES} (Fashion-MNIST has "
                             f"{NUM_IMAGES} images); got {self.num_items}")
        if self.num_users < 1:
            raise ValueError(f"num_users must be >= 1; got {self.num_users}")
        if self.num_clicks < self.min_clicks_per_user * self.num_users:
            raise ValueError(
                f"num_clicks must be at least min_clicks_per_user * num_users = "
                f"{self.min_clicks_per_user} * {self.num_users}; got {self.num_clicks}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0; got {self.seed}")
        for name in ("shift_share", "shift_at"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]; got {value}")
        if len(self.trend_weights) != len(ATTRIBUTES) or min(self.trend_weights) < 0:
            raise ValueError(f"trend_weights must be {len(ATTRIBUTES)} values >= 0, one per "
                             f"{ATTRIBUTES}; got {self.trend_weights}")
        if not 0.0 <= self.new_item_share < 1.0:
            raise ValueError(f"new_item_share must be in [0, 1); got {self.new_item_share}")
        if self.mean_session_length < 1:
            raise ValueError(f"mean_session_length must be >= 1; got {self.mean_session_length}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0; got {self.temperature}")
        for name in ("focus_bonus", "popularity_scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        if len(self.taste_spread) != len(ATTRIBUTES) or min(self.taste_spread) < 0:
            raise ValueError(f"taste_spread must be {len(ATTRIBUTES)} values >= 0, one per "
                             f"{ATTRIBUTES}; got {self.taste_spread}")
        if not self.time_span_days > 0:
            raise ValueError(f"time_span_days must be > 0; got {self.time_span_days}")
        if not 8 <= self.picture_size <= 512:
            raise ValueError(f"picture_size must be in 8..512; got {self.picture_size}")
        if self.picture_channels not in (1, 3):
            raise ValueError(f"picture_channels must be 1 or 3; got {self.picture_channels}")

    @property
    def time_span_s(self) -> float:
        return self.time_span_days * 86_400.0

    @property
    def t_shift(self) -> float:
        """The global time at which shifted users change taste (and any trend
        and new items begin)."""
        return self.start_time + self.shift_at * self.time_span_s

    @property
    def has_trend(self) -> bool:
        return any(w != 1.0 for w in self.trend_weights)


@dataclasses.dataclass
class ShopGroundTruth:
    """What the simulator knows and a real log never tells: true utilities.

    User indices are those of the dataset's ``Interactions.user``; item
    indices those of its catalogue; per-row arrays follow the log's rows.

    The true utility of item ``i`` for user ``u`` at time ``t`` is::

        sum over attribute groups g of taste[u, offset[g] + code[g][i]]
        + popularity[i]
        + focus_bonus if i is in the session's focus category

    where ``taste`` is :attr:`taste_after` from :attr:`t_shift` on and
    :attr:`taste_before` before (the two are equal for a user whose tastes do
    not change). Users click with probability ``softmax(utility / temperature)``
    over the items they have not clicked yet (and, before :attr:`t_shift`,
    that are not :attr:`new_items`).

    Example:

        truth = generate_shop(ShopConfig(num_items=500, num_users=200,
                                         num_clicks=5_000)).ground_truth
        scores = truth.utility(user=0, timestamp=truth.t_shift,
                               focus_category=truth.session_focus[0])
        oracle_top10 = np.argsort(-scores)[:10]

    Attributes:
      item_attributes: attribute group -> int codes [N] into ATTRIBUTE_VALUES.
      taste_before: float64 [U, TASTE_SIZE] tastes, laid out by ATTRIBUTE_OFFSETS.
      taste_after: float64 [U, TASTE_SIZE] tastes from t_shift on (redrawn
        for shifted users, times the trend weights for everyone); the same
        array as taste_before when nothing changes.
      shifted: bool [U], True for users whose tastes are redrawn.
      t_shift: the time of the change, Unix seconds.
      popularity: float64 [N] the popularity term of utility.
      focus_bonus: the utility added to the session's focus category.
      temperature: the softmax temperature of the click choice.
      session: int64 [R] session number of each log row, numbered in order of
        first appearance in the log.
      session_focus: int64 [R] focus category (a class index) of each row's session.
      min_session_gap_s: the least time between one session's end and the
        next one's start.
      new_items: bool [N], items that exist only from t_shift on (none by
        default).
    """

    item_attributes: dict[str, np.ndarray]
    taste_before: np.ndarray
    taste_after: np.ndarray
    shifted: np.ndarray
    t_shift: float
    popularity: np.ndarray
    focus_bonus: float
    temperature: float
    session: np.ndarray
    session_focus: np.ndarray
    min_session_gap_s: float = MIN_SESSION_GAP_S
    new_items: np.ndarray | None = None

    def taste(self, user: int, timestamp: float) -> np.ndarray:
        """The user's flat taste vector in force at ``timestamp``."""
        if timestamp >= self.t_shift:
            return self.taste_after[user]
        return self.taste_before[user]

    def utility(self, user: int, timestamp: float,
                focus_category: int | None = None) -> np.ndarray:
        """True utilities of all items for ``user`` at ``timestamp``, float64 [N].

        Args:
          user: index into ``Interactions.user_ids``.
          timestamp: seconds; decides pre- or post-shift tastes.
          focus_category: the session's focus class, whose items get
            ``focus_bonus``; None scores without a session.
        """
        return _utility(self.taste(user, timestamp), self._item_columns, self.popularity,
                        self.item_attributes["category"],
                        focus_category, self.focus_bonus)

    @functools.cached_property
    def _item_columns(self) -> np.ndarray:
        return _item_columns(self.item_attributes)


def generate_shop(config: ShopConfig = ShopConfig()) -> Dataset:
    """Builds the shop: catalogue, time-ordered click log and ground truth.

    Takes a few seconds at the default size (loading Fashion-MNIST once is
    about half a second of it).

    Raises:
      DataError: Fashion-MNIST is not available (the message says how to get it).
    """
    item_rng, user_rng, click_rng = np.random.default_rng(config.seed).spawn(3)
    all_images, all_labels = load_fashion_mnist()

    image_index = np.sort(item_rng.choice(NUM_IMAGES, size=config.num_items, replace=False))
    images = np.ascontiguousarray(all_images[image_index])
    codes = measure_attributes(images, all_labels[image_index])
    codes["brand"] = item_rng.integers(len(BRANDS), size=config.num_items)
    codes["material"] = item_rng.integers(len(MATERIALS), size=config.num_items)
    codes = {name: codes[name].astype(np.int64) for name in ATTRIBUTES}
    titles, texts = _write_texts(codes, item_rng)
    popularity = _popularity(config, item_rng)
    new_items = np.zeros(config.num_items, dtype=bool)
    new_items[item_rng.choice(config.num_items, size=round(config.new_item_share *
                                                            config.num_items),
                              replace=False)] = True

    taste_before, taste_after, shifted = _draw_tastes(config, user_rng)
    # Users whose click model changes at t_shift: sessions crossing it are cut in two.
    changes = shifted | config.has_trend | new_items.any()
    log = _simulate_clicks(config, codes, popularity, taste_before, taste_after, changes,
                           new_items, click_rng)

    order = np.argsort(log["timestamp"], kind="stable")
    width = max(4, len(str(config.num_users)))
    user_names = np.array([f"u{u + 1:0{width}d}" for u in range(config.num_users)], dtype=object)
    interactions = Interactions.build(users=user_names[log["user"][order]],
                                      items=log["item"][order],
                                      timestamps=log["timestamp"][order])
    # Interactions.build numbers users by first appearance; follow it.
    internal = {name: u for u, name in enumerate(user_names.tolist())}
    user_order = np.array([internal[name] for name in interactions.user_ids.tolist()])

    dress = functools.partial(dress_pictures, size=config.picture_size,
                              channels=config.picture_channels, seed=config.seed)
    catalogue = Catalogue.build(
        item_ids=[f"shop-{i:05d}" for i in image_index], texts=texts,
        images=dress(images[..., np.newaxis]),
        metadata={"title": titles,
                  **{name: [ATTRIBUTE_VALUES[name][c] for c in codes[name]]
                     for name in ATTRIBUTES}})
    unchanged = taste_after is taste_before
    taste_before = taste_before[user_order]
    taste_after = taste_before if unchanged else taste_after[user_order]
    truth = ShopGroundTruth(
        item_attributes=codes, taste_before=taste_before, taste_after=taste_after,
        shifted=shifted[user_order], t_shift=config.t_shift, popularity=popularity,
        focus_bonus=config.focus_bonus, temperature=config.temperature,
        session=_number_by_first_appearance(log["session"][order]),
        session_focus=log["focus"][order], new_items=new_items)
    return Dataset(
        name="shop", catalogue=catalogue, interactions=interactions, ground_truth=truth,
        source=(f"Fashion-MNIST images ({fashion_mnist_source()}) + simulated shoppers, "
                f"seed={config.seed}"),
        reference_scorers={"oracle": ShopOracle(truth),
                           "true attributes": ShopAttributeScorer(truth)},
        outside_pictures=functools.partial(_dressed_outside, images[..., np.newaxis],
                                           catalogue.image_mask, dress))


def dress_pictures(photos: np.ndarray, size: int = 28, channels: int = 1,
                   seed: int = 0) -> np.ndarray:
    """The shop's pictures from 28x28 grey photos uint8 [N, 28, 28, 1]: resized
    to ``size`` (bilinear) and, with 3 ``channels``, tinted with a colour per
    picture drawn from ``seed`` and the picture's position. Unchanged at the
    defaults."""
    if size == photos.shape[1] and channels == 1:
        return photos
    from PIL import Image
    grey = np.empty((len(photos), size, size), np.uint8)
    for index, photo in enumerate(photos[..., 0]):
        grey[index] = np.asarray(Image.fromarray(photo).resize((size, size),
                                                               Image.Resampling.BILINEAR))
    if channels == 1:
        return grey[..., np.newaxis]
    tints = np.random.default_rng([seed, 7]).uniform(0.4, 1.0, size=(len(photos), channels))
    out = np.empty((len(photos), size, size, channels), np.uint8)
    for start in range(0, len(photos), 4096):  # bounded float memory at 60,000 pictures
        part = grey[start:start + 4096, :, :, None] * tints[start:start + 4096, None, None, :]
        out[start:start + 4096] = np.rint(part).astype(np.uint8)
    return out


def _dressed_outside(photos: np.ndarray, image_mask: np.ndarray, dress) -> tuple:
    """The Fashion-MNIST photos outside the catalogue, dressed like its pictures."""
    outside, labels = photos_outside(photos, image_mask)
    return dress(outside), labels


def measure_attributes(images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Category, shade, pattern and fit codes read from the pixels.

    Shade is the mean value of the product's pixels (Fashion-MNIST is negated,
    so a high value is a dark product), pattern the mean absolute difference
    between neighbouring product pixels, fit the share of columns the
    product covers. Each is cut into equal-sized bins within its category.

    Args:
      images: uint8 [N, 28, 28].
      labels: int [N] Fashion-MNIST classes.

    Returns:
      int64 codes [N] for "category", "shade" (0 light .. 2 dark),
      "pattern" (0 plain, 1 patterned) and "fit" (0 slim, 1 wide).
    """
    pixels = images.astype(np.float32)
    foreground = images > _FOREGROUND_THRESHOLD
    area = np.maximum(foreground.sum(axis=(1, 2)), 1)
    darkness = (pixels * foreground).sum(axis=(1, 2)) / area

    across = foreground[:, :, 1:] & foreground[:, :, :-1]
    down = foreground[:, 1:, :] & foreground[:, :-1, :]
    texture_sum = ((np.abs(np.diff(pixels, axis=2)) * across).sum(axis=(1, 2))
                   + (np.abs(np.diff(pixels, axis=1)) * down).sum(axis=(1, 2)))
    texture = texture_sum / np.maximum(across.sum(axis=(1, 2)) + down.sum(axis=(1, 2)), 1)

    width = foreground.any(axis=1).mean(axis=1)
    labels = np.asarray(labels, dtype=np.int64)
    return {"category": labels,
            "shade": _bin_within(darkness, labels, len(SHADES)),
            "pattern": _bin_within(texture, labels, len(PATTERNS)),
            "fit": _bin_within(width, labels, len(FITS))}


def _bin_within(values: np.ndarray, groups: np.ndarray, num_bins: int) -> np.ndarray:
    """Equal-count bins of ``values`` by rank, separately inside each group."""
    codes = np.zeros(len(values), dtype=np.int64)
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        rank = np.empty(len(members), dtype=np.int64)
        rank[np.argsort(values[members], kind="stable")] = np.arange(len(members))
        codes[members] = rank * num_bins // len(members)
    return codes


def _write_texts(codes: dict[str, np.ndarray],
                 rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Titles and full texts; they name category, fit, brand and material only."""
    n = len(codes["category"])
    title_choice = rng.integers(len(_TITLE_TEMPLATES), size=n)
    description_choice = rng.integers(len(_DESCRIPTION_TEMPLATES), size=n)
    fit_word_choice = rng.integers(len(FIT_WORDS[0]), size=n)
    titles, texts = [], []
    for i in range(n):
        fit = FIT_WORDS[codes["fit"][i]][fit_word_choice[i]]
        material = MATERIALS[codes["material"][i]]
        category = CATEGORY_WORDS[codes["category"][i]]
        plural = category in _PLURAL_CATEGORIES
        words = {"brand": BRANDS[codes["brand"][i]], "category": category,
                 "fit": fit, "Fit": fit.capitalize(),
                 "material": material, "Material": material.capitalize(),
                 "this": "these" if plural else "this",
                 "belongs": "belong" if plural else "belongs"}
        title = _TITLE_TEMPLATES[title_choice[i]].format(**words)
        titles.append(title)
        texts.append(f"{title}. {_DESCRIPTION_TEMPLATES[description_choice[i]].format(**words)}")
    return titles, texts


def _popularity(config: ShopConfig, rng: np.random.Generator) -> np.ndarray:
    """Zipf-like log-popularity over a random ranking, centred on zero."""
    rank = rng.permutation(config.num_items) + 1
    popularity = -config.popularity_scale * np.log(rank)
    return popularity - popularity.mean()


def _draw_tastes(config: ShopConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tastes before and after t_shift (the same array when nothing changes), and
    who shifts."""
    # A value's weight has sd s / sqrt(1 - 1/k), so that the group's
    # contribution varies across items with sd about s, whatever k is.
    scale = np.concatenate([
        np.full(k, spread / np.sqrt(1 - 1 / k))
        for k, spread in zip(_SIZES, config.taste_spread)])

    def draw(count: int) -> np.ndarray:
        return rng.standard_normal((count, TASTE_SIZE)) * scale

    taste_before = draw(config.num_users)
    shifted = np.zeros(config.num_users, dtype=bool)
    shifted[rng.choice(config.num_users, size=round(config.shift_share * config.num_users),
                       replace=False)] = True
    if not shifted.any() and not config.has_trend:
        return taste_before, taste_before, shifted
    taste_after = taste_before.copy()
    if shifted.any():
        taste_after[shifted] = draw(int(shifted.sum()))
    taste_after *= np.repeat(np.asarray(config.trend_weights, dtype=np.float64), _SIZES)
    return taste_before, taste_after, shifted


def _simulate_clicks(config: ShopConfig, codes: dict[str, np.ndarray], popularity: np.ndarray,
                     taste_before: np.ndarray, taste_after: np.ndarray,
                     changes: np.ndarray, new_items: np.ndarray,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every user's sessions and clicks, in (user, time) order.

    Session times are laid out first, so that each click knows whether it
    falls before or after the shift; then each session's clicks are drawn
    without replacement from softmax(utility / temperature) by the
    Gumbel-top-k trick (the k largest of logit + Gumbel noise), skipping what
    the user clicked before. For a user whose click model changes at t_shift
    (``changes``), a session that crosses it is drawn in two segments, one per
    taste; new items cannot be drawn before t_shift.
    """
    counts = _clicks_per_user(config, rng)
    columns = _item_columns(codes)
    category = codes["category"]
    category_columns = ATTRIBUTE_OFFSETS["category"] + np.arange(len(CLASS_NAMES))
    # focus_logit[f] is what focusing on category f adds to every item's logit.
    focus_logit = ((config.focus_bonus / config.temperature)
                   * (category[np.newaxis, :] == np.arange(len(CLASS_NAMES))[:, np.newaxis])
                   ).astype(np.float32)
    rows_per_block = max(1, (1 << 22) // config.num_items)  # bounds the noise block's memory
    users, items, times, sessions, focuses = [], [], [], [], []
    session_count = 0
    for user in range(config.num_users):
        lengths = _session_lengths(int(counts[user]), config.mean_session_length, rng)
        click_times, session_of_click = _click_times(lengths, config, rng)
        after_shift = (changes[user] & (click_times >= config.t_shift)).astype(np.int64)
        tastes = np.stack([taste_before[user], taste_after[user]])
        base_logit = np.stack([_utility(t, columns, popularity) for t in tastes])
        base_logit = (base_logit / config.temperature).astype(np.float32)
        base_logit[0, new_items] = -np.inf

        first_click = np.r_[0, np.cumsum(lengths)[:-1]]
        category_taste = tastes[after_shift[first_click]][:, category_columns]
        focus = np.argmax(category_taste + rng.gumbel(size=category_taste.shape), axis=1)

        # Segments: runs of clicks in one session under one taste.
        new_segment = np.r_[True, (np.diff(session_of_click) != 0) | (np.diff(after_shift) != 0)]
        segment_start = np.flatnonzero(new_segment)
        segment_end = np.r_[segment_start[1:], len(click_times)]
        segment_logit_rows = (after_shift[segment_start], focus[session_of_click[segment_start]])

        user_items = np.empty(len(click_times), dtype=np.int64)
        for block in range(0, len(segment_start), rows_per_block):
            chosen = slice(block, block + rows_per_block)
            phase, segment_focus = (rows[chosen] for rows in segment_logit_rows)
            uniform = rng.random((len(phase), config.num_items), dtype=np.float32)
            with np.errstate(divide="ignore"):  # uniform == 0: a -inf logit, never drawn
                logits = base_logit[phase] + focus_logit[segment_focus] - np.log(-np.log(uniform))
            for row, start, end in zip(logits, segment_start[chosen], segment_end[chosen]):
                row[user_items[:start]] = -np.inf
                top = np.argpartition(-row, end - start - 1)[:end - start]
                user_items[start:end] = top[np.argsort(-row[top], kind="stable")]
        users.append(np.full(len(click_times), user))
        items.append(user_items)
        times.append(click_times)
        sessions.append(session_count + session_of_click)
        focuses.append(focus[session_of_click])
        session_count += len(lengths)
    return {"user": np.concatenate(users), "item": np.concatenate(items),
            "timestamp": np.concatenate(times), "session": np.concatenate(sessions),
            "focus": np.concatenate(focuses).astype(np.int64)}


def _clicks_per_user(config: ShopConfig, rng: np.random.Generator) -> np.ndarray:
    """Lognormal activity: a few heavy users, everyone at the minimum or more."""
    activity = rng.lognormal(mean=0.0, sigma=1.0, size=config.num_users)
    spare = config.num_clicks - config.min_clicks_per_user * config.num_users
    counts = config.min_clicks_per_user + rng.multinomial(spare, activity / activity.sum())
    return np.minimum(counts, config.num_items // 2)


def _session_lengths(count: int, mean_length: float, rng: np.random.Generator) -> np.ndarray:
    """Session sizes of 1 + Poisson(mean - 1) clicks that add up to ``count``."""
    lengths = 1 + rng.poisson(mean_length - 1, size=count)
    total = np.cumsum(lengths)
    num_sessions = int(np.searchsorted(total, count)) + 1
    lengths = lengths[:num_sessions]
    lengths[-1] -= total[num_sessions - 1] - count
    return lengths


def _click_times(lengths: np.ndarray, config: ShopConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Integer click times: sessions spread over the span, minutes within one.

    Session starts are uniform over the room left once every session's
    duration and the minimum gap are set aside, then pushed apart by those,
    so sessions never overlap and all clicks fall inside the span.
    """
    num_clicks = int(lengths.sum())
    session_of_click = np.repeat(np.arange(len(lengths)), lengths)
    first_click = np.r_[0, np.cumsum(lengths)[:-1]]
    gaps = np.minimum(np.ceil(rng.exponential(_MEAN_CLICK_GAP_S, size=num_clicks)),
                      _MAX_CLICK_GAP_S)
    gaps[first_click] = 0
    offset_in_session = np.cumsum(gaps) - np.cumsum(gaps)[first_click][session_of_click]
    duration = offset_in_session[np.r_[first_click[1:] - 1, num_clicks - 1]]
    room = max(config.time_span_s - duration.sum() - len(lengths) * MIN_SESSION_GAP_S, 0.0)
    starts = np.floor(np.sort(rng.uniform(0.0, room, size=len(lengths))))
    starts += np.r_[0, np.cumsum(duration + MIN_SESSION_GAP_S)[:-1]]
    times = config.start_time + starts[session_of_click] + offset_in_session
    return times, session_of_click


def _item_columns(codes: dict[str, np.ndarray]) -> np.ndarray:
    """int64 [groups, N]: where each item's attribute values sit in a taste vector."""
    return np.stack([codes[name] + ATTRIBUTE_OFFSETS[name] for name in ATTRIBUTES])


def _utility(taste: np.ndarray, item_columns: np.ndarray, popularity: np.ndarray,
             category: np.ndarray | None = None, focus_category: int | None = None,
             focus_bonus: float = 0.0) -> np.ndarray:
    """Attribute tastes summed per item, plus popularity and any session focus."""
    # Summed group by group in a fixed order, so results repeat exactly.
    utility = taste[item_columns].sum(axis=0) + popularity
    if focus_category is not None:
        utility = utility + focus_bonus * (category == focus_category)
    return utility


def _number_by_first_appearance(labels: np.ndarray) -> np.ndarray:
    """Renumbers labels 0, 1, ... in the order they first occur."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse]
