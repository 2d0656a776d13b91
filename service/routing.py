"""Per-request choice between the base model and the robust model (the paper's §5 router).

``router=base`` and ``router=robust`` are obeyed as asked. ``router=auto`` runs the trained
audio-quality router on the request's audio (its first 30 s, the router's input length) and sends
it to the robust model when ``p_degraded >= threshold``. Two rules keep auto routing honest:

* it never routes on an untrained network: without a trained router (no ``--checkpoint``, or a
  bundle without ``router/``, or one whose weights are not marked trained) ``auto`` means base,
  ``p_degraded`` is null, and :attr:`QualityRouter.status` says why (logged at start, shown in
  ``/v1/models``);
* it never routes to a model that is not loaded: without a robust model, ``auto`` means base.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from service.models.bundle import Bundle

log = logging.getLogger(__name__)

RouterMode = Literal["auto", "base", "robust"]
ROUTER_MODES: tuple[str, ...] = ("auto", "base", "robust")


@dataclass(frozen=True)
class RouteDecision:
    mode: RouterMode
    adapter: Literal["base", "robust"]
    p_degraded: float | None = None


class QualityRouter:
    """The router network (if any, and only if trained) with its decision threshold."""

    def __init__(self, net, threshold: float, status: str) -> None:
        self._net = net
        self.threshold = threshold
        self.status = status

    @property
    def active(self) -> bool:
        """True when ``auto`` consults a trained network."""
        return self._net is not None

    @classmethod
    def from_bundle(cls, bundle: Bundle | None, robust_loaded: bool) -> QualityRouter:
        """Load the bundle's router, or explain in :attr:`status` why auto routing stays on base."""
        if bundle is None:
            return cls(None, 0.5, "untrained: no --checkpoint given, router=auto uses the base model")
        if not robust_loaded:
            return cls(None, bundle.router_threshold,
                       "inactive: no robust model is loaded, router=auto uses the base model")
        if bundle.router is None:
            return cls(None, bundle.router_threshold,
                       "untrained: the checkpoint has no router, router=auto uses the base model")
        from service.models.router_net import AudioQualityRouter

        net = AudioQualityRouter.load(bundle.router)
        if not net.trained:
            return cls(None, bundle.router_threshold,
                       "untrained: the checkpoint's router is not marked trained, router=auto uses the base model")
        auc = (net.training_metadata.get("val_at_threshold") or {}).get("auc")
        detail = f", validation AUC {auc:.3f}" if isinstance(auc, float) else ""
        return cls(net, bundle.router_threshold, f"trained: threshold {bundle.router_threshold:.3f}{detail}")

    def p_degraded(self, samples: np.ndarray) -> float:
        """Probability that the audio is degraded (CPU work: call it off the event loop)."""
        if self._net is None:
            raise RuntimeError("no trained router is loaded")
        return float(self._net.predict_proba([samples])[0])

    def decide(self, mode: RouterMode, samples: np.ndarray) -> RouteDecision:
        """The route for one request (runs the network for ``auto``; call it off the event loop)."""
        if mode != "auto":
            return RouteDecision(mode, mode)
        if not self.active or samples.size == 0:
            return RouteDecision(mode, "base")
        p = self.p_degraded(samples)
        return RouteDecision(mode, "robust" if p >= self.threshold else "base", round(p, 4))
