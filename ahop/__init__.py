"""ahop: associative-memory (Hopfield) networks in pure PyTorch.

``retrieval = projection . separation(similarity(memories, query))``: similarities and separations
are registered by name, :func:`retrieve` runs one or more update steps, and the layers
(:class:`Hopfield`, :class:`HopfieldLayer`, :class:`HopfieldPooling`) follow the hopfield-layers
argument names. No Lightning import anywhere in this package.
"""

__version__ = "0.1.0"

from ahop.candidates import top_candidates
from ahop.classical import CAPACITY_THEORY, BinaryHopfield
from ahop.classifiers import TABULAR_NETWORKS, TabularHopfieldClassifier
from ahop.energy import ENERGY_FORMS, LAGRANGIANS, lagrangian, uhn_energy
from ahop.feature_embeddings import FEATURE_EMBEDDINGS
from ahop.functional import Retrieval, associate, retrieve
from ahop.layers import Hopfield, HopfieldLayer, HopfieldPooling
from ahop.lshn import (
    LSHN,
    LatentAttractor,
    LSHNRetrieval,
    latent_bit_accuracy,
    make_optimizer,
    scale_to_pm1,
    scale_to_unit,
)
from ahop.separation import SEPARATIONS, build_separation
from ahop.similarity import (
    SIMILARITIES,
    AdaptiveSimilarity,
    CosineSimilarity,
    DotSimilarity,
    EuclideanSimilarity,
    ManhattanSimilarity,
    build_similarity,
)
from ahop.tabular_retrieval import TabularRetrievalClassifier
from ahop.uhop import UHopSimilarity, separation_loss
from ahop.variants import VARIANTS, build_variant

__all__ = [
    "CAPACITY_THEORY",
    "ENERGY_FORMS",
    "FEATURE_EMBEDDINGS",
    "LAGRANGIANS",
    "LSHN",
    "SEPARATIONS",
    "SIMILARITIES",
    "TABULAR_NETWORKS",
    "VARIANTS",
    "AdaptiveSimilarity",
    "BinaryHopfield",
    "CosineSimilarity",
    "DotSimilarity",
    "EuclideanSimilarity",
    "Hopfield",
    "HopfieldLayer",
    "HopfieldPooling",
    "LSHNRetrieval",
    "LatentAttractor",
    "ManhattanSimilarity",
    "Retrieval",
    "TabularHopfieldClassifier",
    "TabularRetrievalClassifier",
    "UHopSimilarity",
    "__version__",
    "associate",
    "build_separation",
    "build_similarity",
    "build_variant",
    "lagrangian",
    "latent_bit_accuracy",
    "make_optimizer",
    "retrieve",
    "scale_to_pm1",
    "scale_to_unit",
    "separation_loss",
    "top_candidates",
    "uhn_energy",
]
