"""Label-free forgetting: how well a later encoder still serves an earlier stage, and how far it moved.

`reconstruction_loss` pairs the encoder of one model with the decoder of another. The decoder saved at the
end of stage j is the fixed "reader" of stage j: it only knows how to reconstruct from the features the
stage-j encoder produced. Feeding it a later encoder's features therefore measures whether those features
still carry what stage j relied on, whereas re-training or reusing the later model's own decoder would hide
forgetting behind a decoder that adapted along with the encoder.

`linear_cka` measures feature drift between two encoders on the same slices without any decoder or label.
"""

from __future__ import annotations

import numpy as np
import torch

from cssl_core.device import device_of
from cssl_core.models.mae import MaskedAutoencoder, masked_patch_loss, patch_mask


def _check_compatible(encoder_model: MaskedAutoencoder, decoder_model: MaskedAutoencoder) -> None:
    enc, dec = encoder_model.config, decoder_model.config
    for field in ("img_size", "patch_size", "hidden_size", "in_channels", "norm_target"):
        if getattr(enc, field) != getattr(dec, field):
            raise ValueError(
                f"encoder and decoder models disagree on {field}: {getattr(enc, field)} vs {getattr(dec, field)}"
            )


@torch.no_grad()
def reconstruction_loss(
    encoder_model: MaskedAutoencoder,
    decoder_model: MaskedAutoencoder,
    images: torch.Tensor,
    seed: int,
    mask_ratio: float = 0.75,
    batch: int = 64,
) -> float:
    """Masked-reconstruction loss (MAE loss: masked patches, per-patch normalised targets) of
    `encoder_model`'s encoder read by `decoder_model`'s decoder, on `images` (n, 1, S, S) in [0, 1].

    The masks are drawn once for all n images from `torch.Generator().manual_seed(seed)`, exactly as one
    `model.mae_loss(images, mask_ratio, generator)` call would draw them, and before any batching. So the
    value depends on neither the batch size nor the encoder: every cell of a forgetting matrix evaluated
    with the same seed hides the same patches, and differences between encoders are not mask noise. With
    `encoder_model is decoder_model` the value equals that model's own `mae_loss` under the same seed.
    Both models are evaluated in eval mode and their modes are restored.
    """
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    if images.ndim != 4:
        raise ValueError(f"images must be (n, 1, S, S), got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("no image to evaluate")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    _check_compatible(encoder_model, decoder_model)
    config = encoder_model.config
    if images.shape[-1] != config.img_size or images.shape[-2] != config.img_size:
        raise ValueError(f"images are {tuple(images.shape[-2:])} px but the models expect {config.img_size} px")

    device, dec_device = device_of(encoder_model), device_of(decoder_model)
    n, n_tokens = images.shape[0], config.num_patches
    generator = torch.Generator().manual_seed(int(seed))
    all_keep = encoder_model.draw_keep_indices(n, mask_ratio, generator, device)  # as forward_masked draws them

    modes = (encoder_model.training, decoder_model.training)
    encoder_model.eval()
    decoder_model.eval()
    total = 0.0
    try:
        for start in range(0, n, batch):
            x = images[start : start + batch].to(device=device, dtype=torch.float32)
            ids_keep = all_keep[start : start + batch]
            latent, _ = encoder_model.encode_visible(x, ids_keep)
            ids_keep = ids_keep.to(dec_device)
            pred = decoder_model.decode(latent.to(dec_device), ids_keep)
            mask = patch_mask(ids_keep, n_tokens)
            target = encoder_model.patch_targets(x).to(dec_device)
            # every image hides the same number of patches, so the image-weighted mean of batch means is the
            # mean over all masked patches, i.e. what one big batch would give
            total += float(masked_patch_loss(pred, target, mask)) * x.shape[0]
    finally:
        encoder_model.train(modes[0])
        decoder_model.train(modes[1])
    return total / n


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Centered linear CKA (Kornblith et al. 2019) between (n, d1) and (n, d2) features of the same n inputs:
    ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F).

    CKA rather than a raw distance because it is invariant to orthogonal transforms and isotropic scaling of
    either side, i.e. to the changes that leave a linear probe's power unchanged, so it reports representational
    drift and not a harmless rotation of the feature space. Computed in float64; nan when either side is
    constant (the similarity is undefined).
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(f"features must be 2-D (n, d), got {X.shape} and {Y.shape}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must describe the same inputs, got {X.shape[0]} and {Y.shape[0]} rows")
    Xc = X - X.mean(axis=0, keepdims=True)
    Yc = Y - Y.mean(axis=0, keepdims=True)
    # feature-space form: O(n d^2), cheaper than the n x n Gram form when n >> d (many slices, 192 channels)
    cross = np.linalg.norm(Yc.T @ Xc, "fro") ** 2
    norm_x = np.linalg.norm(Xc.T @ Xc, "fro")
    norm_y = np.linalg.norm(Yc.T @ Yc, "fro")
    denom = norm_x * norm_y
    if denom <= 0.0 or not np.isfinite(denom):
        return float("nan")
    return float(cross / denom)
