"""Downstream probes on frozen features: linear (pooled), attentive (a learned query over the tokens) and
token-level (one prediction per patch, against lesion masks). Binary tasks only.

Why three: a lesion covers a few patches of a slice, so its evidence lives in a few tokens. Mean pooling
divides that evidence by the number of tokens while the noise of the others averages only by its square
root, so a pooled linear probe can sit at chance on features that do encode the lesion. The attentive probe
can weight the informative tokens, and the token probe asks directly whether each patch's token knows it
overlaps a lesion. All three report the same metrics (AUC, accuracy, F1 of the positive class) so they fill
the same R[i][j] matrices.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

LOGREG_MAX_ITER = 5000
KNN_K = 20  # neighbours of the kNN probe (fewer when the training side is smaller)
KNN_TEMPERATURE = 0.07  # of its exp(cosine similarity / T) vote weights (DINO's value)


def _binary_labels(y: np.ndarray, what: str) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:  # bools compare equal to 0 and 1
        raise ValueError(f"{what} must be binary (0/1 or bool), got values {sorted(values)[:5]}")
    return y.astype(np.int64)


def binary_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUC of `scores`, accuracy and positive-class F1 of `scores > threshold`.

    AUC is nan (not an exception) when `y_true` holds one class: a leave-one-patient-out fold often tests a
    patient whose slices are all negative, and one such fold must not abort a whole evaluation; aggregate
    with nan-aware means. F1 is 0 when nothing is predicted or labelled positive (sklearn's zero_division=0).
    """
    y_true = _binary_labels(y_true, "y_true")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(y_true) != len(scores):
        raise ValueError(f"{len(y_true)} labels but {len(scores)} scores")
    if len(y_true) == 0:
        return {"auc": float("nan"), "accuracy": float("nan"), "f1": float("nan")}
    pred = (scores > threshold).astype(np.int64)
    auc = float(roc_auc_score(y_true, scores)) if len(np.unique(y_true)) == 2 else float("nan")
    return {
        "auc": auc,
        "accuracy": float(accuracy_score(y_true, pred)),
        "f1": float(f1_score(y_true, pred, pos_label=1, zero_division=0)),
    }


def linear_probe(
    train_X: np.ndarray, train_y: np.ndarray, test_X: np.ndarray, test_y: np.ndarray, seed: int
) -> dict[str, float]:
    """StandardScaler + class-balanced logistic regression on (n, d) features; metrics on the test side.

    Standardising makes the L2 penalty treat every channel alike (encoder channels differ in scale by orders
    of magnitude); balanced class weights keep a rare positive class (tumour slices) from being ignored for
    a high accuracy. When the training side holds a single class there is nothing to fit: the probe then
    predicts that class everywhere and its AUC is nan, instead of failing the surrounding loop.
    """
    train_X, test_X = _features_2d(train_X, "train_X"), _features_2d(test_X, "test_X")
    train_y, test_y = _binary_labels(train_y, "train_y"), _binary_labels(test_y, "test_y")
    _check_rows(train_X, train_y, "train")
    _check_rows(test_X, test_y, "test")
    classes = np.unique(train_y)
    if len(classes) < 2:
        constant = float(classes[0]) if len(classes) else 0.0
        metrics = binary_metrics(test_y, np.full(len(test_y), constant))
        metrics["auc"] = float("nan")
        return metrics
    scaler = StandardScaler().fit(train_X)
    model = LogisticRegression(max_iter=LOGREG_MAX_ITER, class_weight="balanced", random_state=seed)
    # One BLAS thread: scipy's L-BFGS-B makes thousands of BLAS calls on 200-long vectors, and with a
    # multi-threaded BLAS each call pays a thread hand-off; measured on 11,520 tokens x 192 channels on
    # 2 cores, one fit took 2.4 s with 2 BLAS threads and 0.14 s with 1 (same iterations, same weights).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        # on (nearly) separable features the weights grow until max_iter; the scores still rank correctly
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(scaler.transform(train_X), train_y)
    scores = model.predict_proba(scaler.transform(test_X))[:, 1]
    return binary_metrics(test_y, scores)


def knn_probe(
    train_X: np.ndarray,
    train_y: np.ndarray,
    test_X: np.ndarray,
    test_y: np.ndarray,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
) -> dict[str, float]:
    """Weighted k-nearest-neighbour vote on standardised (n, d) features: nothing is fitted, so no optimiser,
    seed or regularisation can move the number; it asks whether slices of one class lie near each other.

    The usual SSL kNN evaluation (Wu et al. 2018, DINO): cosine similarity s to the min(k, n_train) nearest
    training slices, each vote weighted exp(s / temperature). The weighting matters on few-shot sides: with
    k >= n_train a plain vote share is the same for every test slice (AUC 0.5 whatever the features), the
    weighted one still ranks by closeness. The score is the class-balanced positive share of the votes,
    (P/n_pos) / (P/n_pos + N/n_neg) for vote sums P and N, so 0.5 means "as much as the class sizes predict"
    and a rare positive class is not drowned at the 0.5 threshold (accuracy, F1). Cosine: after
    standardising, a pooled feature's direction carries its content, its norm mostly the slice's overall
    brightness. Brute-force search: the same inputs give the same neighbours and scores. Single-class
    training sides get the linear probe's treatment (constant prediction, AUC nan).
    """
    train_X, test_X = _features_2d(train_X, "train_X"), _features_2d(test_X, "test_X")
    train_y, test_y = _binary_labels(train_y, "train_y"), _binary_labels(test_y, "test_y")
    _check_rows(train_X, train_y, "train")
    _check_rows(test_X, test_y, "test")
    if k < 1 or not temperature > 0:
        raise ValueError(f"k must be >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    n_pos = int(train_y.sum())
    n_neg = len(train_y) - n_pos
    if n_pos == 0 or n_neg == 0 or len(test_y) == 0:
        metrics = binary_metrics(test_y, np.full(len(test_y), 1.0 if n_pos else 0.0))
        metrics["auc"] = float("nan")
        return metrics
    scaler = StandardScaler().fit(train_X)
    neighbours = NearestNeighbors(n_neighbors=min(k, len(train_y)), metric="cosine", algorithm="brute")
    neighbours.fit(scaler.transform(train_X))
    distance, idx = neighbours.kneighbors(scaler.transform(test_X))
    votes = np.exp(-distance / temperature)  # exp((s - 1) / T) with s = 1 - distance: <= 1, no overflow
    positive = (votes * train_y[idx]).sum(axis=1) / n_pos
    negative = (votes * (1 - train_y[idx])).sum(axis=1) / n_neg
    return binary_metrics(test_y, positive / (positive + negative))


def _features_2d(X: np.ndarray, what: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{what} must be (n, d), got shape {X.shape}")
    return X


def _check_rows(X: np.ndarray, y: np.ndarray, what: str) -> None:
    if X.shape[0] != len(y):
        raise ValueError(f"{what}: {X.shape[0]} feature rows but {len(y)} labels")


class AttentivePooler(nn.Module):
    """A learned query per head attends over the tokens; a linear classifier reads the attended tokens.

    With one query, q . (W_k x_t) = (W_k^T q) . x_t, so the key projection folds into one vector per head
    (`self.keys`), and a value projection followed by a linear classifier folds into the classifier. This
    is therefore the full softmax(q K^T / sqrt(d)) V -> linear probe, parametrised without the redundant
    d x d matrices: O(n T d) per pass instead of O(n T d^2), and far fewer parameters to overfit with a few
    hundred labelled slices. The 1/sqrt(d) temperature is folded into the learned key vector as well (it
    only rescales it). Keys start near zero, i.e. the probe starts as a mean-pooled linear probe and learns
    where to look; the small random part only breaks the symmetry between heads.
    """

    def __init__(self, dim: int, heads: int = 1) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"heads must be >= 1, got {heads}")
        self.heads = heads
        self.keys = nn.Linear(dim, heads, bias=False)
        nn.init.normal_(self.keys.weight, std=1e-2)
        self.classifier = nn.Linear(dim * heads, 1)
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def attention(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, T, d) -> (n, heads, T) attention weights (each row sums to 1)."""
        return torch.softmax(self.keys(tokens).transpose(1, 2), dim=-1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        attended = self.attention(tokens) @ tokens  # (n, heads, d)
        return self.classifier(attended.flatten(1)).squeeze(-1)

    def penalty(self) -> torch.Tensor:
        """Sum of squared weights (biases excluded), the L2 term of the probe's objective."""
        return self.keys.weight.square().sum() + self.classifier.weight.square().sum()


def _tokens_3d(tokens: np.ndarray, what: str) -> np.ndarray:
    tokens = np.asarray(tokens, dtype=np.float32)
    if tokens.ndim != 3:
        raise ValueError(f"{what} must be (n, tokens, C), got shape {tokens.shape}")
    return tokens


# below this many training-token values one thread is fastest: intra-op threading only adds synchronisation,
# which on a busy CPU costs 10-100x the arithmetic (measured: 0.3 ms vs 20 ms per step on 2 shared cores)
_SINGLE_THREAD_ELEMENTS = 8_000_000


def attentive_probe(
    train_tokens: np.ndarray,
    train_y: np.ndarray,
    test_tokens: np.ndarray,
    test_y: np.ndarray,
    seed: int,
    epochs: int = 200,
    lr: float = 1.0,
    l2: float = 1e-2,
    heads: int = 1,
) -> dict[str, float]:
    """Train an `AttentivePooler` on frozen (n, T, C) tokens (class-balanced BCE + `l2` * squared weights);
    test metrics.

    Optimiser: full-batch L-BFGS (strong-Wolfe line search), so one iteration is one epoch and `lr` is
    L-BFGS's initial step scale. Not AdamW: on ~300 slices x 192 channels, Adam's per-coordinate step
    normalisation grows the 191 noise channels as fast as the one that carries the signal, and the probe
    memorised noise before attention could sharpen. On synthetic one-lesion-token data (d=192, n=300,
    3 seeds) AdamW reached test AUC 0.71-0.93, this 0.98 in about the same time; it is also deterministic.
    Channels are standardised with the training tokens' statistics (the linear probe's StandardScaler, for
    the same reason). `seed` drives the tiny symmetry-breaking key initialisation, inside a forked RNG that
    leaves the caller's global torch RNG untouched. Single-class training sides get the linear probe's
    treatment (constant prediction, AUC nan).
    """
    train_tokens = _tokens_3d(train_tokens, "train_tokens")
    test_tokens = _tokens_3d(test_tokens, "test_tokens")
    train_y, test_y = _binary_labels(train_y, "train_y"), _binary_labels(test_y, "test_y")
    _check_rows(train_tokens, train_y, "train")
    _check_rows(test_tokens, test_y, "test")
    if train_tokens.shape[2] != test_tokens.shape[2]:
        raise ValueError(f"train and test tokens differ in width: {train_tokens.shape[2]} vs {test_tokens.shape[2]}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    n_pos = int(train_y.sum())
    n_neg = len(train_y) - n_pos
    if n_pos == 0 or n_neg == 0:
        constant = 1.0 if n_pos else 0.0
        metrics = binary_metrics(test_y, np.full(len(test_y), constant))
        metrics["auc"] = float("nan")
        return metrics

    mean = train_tokens.mean(axis=(0, 1), keepdims=True)
    std = train_tokens.std(axis=(0, 1), keepdims=True) + 1e-6
    x_train = torch.from_numpy((train_tokens - mean) / std)
    x_test = torch.from_numpy((test_tokens - mean) / std)
    y_train = torch.from_numpy(train_y.astype(np.float32))

    threads = torch.get_num_threads()
    try:
        with torch.random.fork_rng(devices=[]):
            if train_tokens.size <= _SINGLE_THREAD_ELEMENTS:
                torch.set_num_threads(1)
            torch.manual_seed(seed)
            probe = AttentivePooler(x_train.shape[2], heads=heads)
            # pos_weight = n_neg / n_pos: the BCE analogue of class_weight="balanced"
            loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(n_neg / n_pos))
            optimizer = torch.optim.LBFGS(
                probe.parameters(),
                lr=lr,
                max_iter=epochs,
                history_size=20,
                tolerance_grad=1e-7,
                tolerance_change=1e-10,
                line_search_fn="strong_wolfe",
            )

            def closure() -> torch.Tensor:
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(probe(x_train), y_train) + l2 * probe.penalty()
                loss.backward()
                return loss

            optimizer.step(closure)
            with torch.no_grad():
                scores = torch.sigmoid(probe(x_test)).numpy()
    finally:
        torch.set_num_threads(threads)
    return binary_metrics(test_y, scores)


def token_labels_from_masks(masks: np.ndarray, patch_size: int, min_fraction: float = 0.0) -> np.ndarray:
    """(n, S, S) lesion masks -> (n, tokens) bool, in the encoder's row-major patch order.

    A token is positive when the lesion covers more than `min_fraction` of its patch; the default 0.0 makes
    any lesion pixel count, because small nodules would otherwise have no positive token at all. Raise it to
    drop patches that only graze a contour edge.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (n, S, S), got shape {masks.shape}")
    n, height, width = masks.shape
    if patch_size < 1 or height % patch_size or width % patch_size:
        raise ValueError(f"patch_size {patch_size} must divide the mask size {height}x{width}")
    if not 0.0 <= min_fraction < 1.0:
        raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction}")
    gh, gw = height // patch_size, width // patch_size
    patches = (masks > 0).reshape(n, gh, patch_size, gw, patch_size)
    fraction = patches.mean(axis=(2, 4))  # (n, gh, gw), row-major like patchify
    return (fraction > min_fraction).reshape(n, gh * gw)


def token_probe(
    train_tokens: np.ndarray,
    train_token_labels: np.ndarray,
    test_tokens: np.ndarray,
    test_token_labels: np.ndarray,
    seed: int,
) -> dict[str, float]:
    """Linear probe per token: every (slice, patch) token is one sample labelled by lesion overlap.

    One shared classifier for all positions (not one per position), so it tests whether lesion-ness is
    linearly readable from a token's content; the sin-cos position embedding is part of the token, so the
    classifier may still use location. Metrics are over all test tokens.
    """
    train_tokens = _tokens_3d(train_tokens, "train_tokens")
    test_tokens = _tokens_3d(test_tokens, "test_tokens")
    train_labels = np.asarray(train_token_labels)
    test_labels = np.asarray(test_token_labels)
    if train_labels.shape != train_tokens.shape[:2] or test_labels.shape != test_tokens.shape[:2]:
        raise ValueError(
            f"token labels must be (n, tokens) like the tokens: got {train_labels.shape} for "
            f"{train_tokens.shape[:2]} and {test_labels.shape} for {test_tokens.shape[:2]}"
        )
    width = train_tokens.shape[2]
    return linear_probe(
        train_tokens.reshape(-1, width),
        train_labels.reshape(-1),
        test_tokens.reshape(-1, width),
        test_labels.reshape(-1),
        seed,
    )
