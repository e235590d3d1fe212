"""Type stubs of vaecore._core, the C core. Shapes: n rows, D = input_dim,
K = latent_dim, P = num_params. Every array is C-contiguous of the model's dtype."""
from typing import Final

import numpy as np
from numpy.typing import NDArray

_F = NDArray[np.float32 | np.float64]

ACTIVATIONS: Final[tuple[str, ...]]
LIKELIHOODS: Final[tuple[str, ...]]
MAX_HIDDEN_LAYERS: Final[int]   # hidden layers per side of the MLP form
MAX_LAYERS: Final[int]          # layers per stack
MAX_WIDTH: Final[int]           # the largest size of anything (a width, C*H*W)
HAVE_OPENMP: Final[int]

# a layer as the C core reads it: (kind, args...), see vaecore/layers.py's encode
_Layer = tuple[int, ...]

def set_num_threads(n: int, /) -> None: ...
def get_num_threads() -> int: ...
def get_isa() -> str: ...
def set_isa(name: str, /) -> None: ...
# test and benchmark hooks
def matmul(a: _F, b: _F, trans_a: bool = False, trans_b: bool = False, reference: bool = False, /) -> _F: ...
def activation(a: _F, name: str, /) -> _F: ...
def gemm_bench(M: int, N: int, K: int, repeats: int = 10, dtype: str = "float32", trans_a: bool = False,
               trans_b: bool = False, /) -> float: ...
def profile(on: bool, /) -> dict[str, object]: ...   # per-phase seconds of training steps; check, norm: seconds

class Model:
    def __new__(cls, input_shape: tuple[int] | tuple[int, int, int], latent_dim: int, encoder: list[_Layer],
                decoder: list[_Layer], likelihood: str, variational: bool, dtype: str, seed: int) -> Model: ...
    @property
    def params(self) -> _F: ...                  # (P,) the live buffer
    @property
    def num_params(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def config(self) -> dict[str, object]: ...
    rng_state: tuple[int, int, int, int]
    def layout(self, /) -> list[tuple[str, int, tuple[int, ...]]]: ...
    def normal(self, n: int, seed: int | None = None, /) -> _F: ...          # (n, K)
    def encode(self, x: _F, /) -> tuple[_F, _F | None]: ...                  # (n, D) -> (n, K), (n, K)
    def decode(self, z: _F, logits: bool = False, /) -> _F: ...             # (n, K) -> (n, D)
    def reparameterize(self, mu: _F, logvar: _F, eps: _F, /) -> _F: ...      # all (n, K)
    def loss(self, x: _F, beta: float, eps: _F | None, /) -> tuple[float, float, float]: ...
    def loss_and_grad(self, x: _F, beta: float, eps: _F | None, /) -> tuple[tuple[float, float, float], _F]: ...
    def train_step(self, x: _F, beta: float, eps: _F | None, kind: int, lr: float, beta1: float, beta2: float,
                   adam_eps: float, momentum: float, clip_norm: float, t: NDArray[np.int64], s1: _F | None, s2: _F | None,
                   /) -> tuple[float, float, float]: ...

# one network's optimizer for Gan.train_step: (kind, lr, beta1, beta2, eps, momentum, clip_norm, t, s1, s2)
_Optim = tuple[int, float, float, float, float, float, float, NDArray[np.int64], _F, _F | None]

class Gan:
    def __new__(cls, data_shape: tuple[int] | tuple[int, int, int], latent_dim: int, generator: list[_Layer],
                discriminator: list[_Layer], dtype: str, seed: int) -> Gan: ...
    @property
    def params(self) -> _F: ...                  # (P,) the live buffer: the generator's part first
    @property
    def num_params(self) -> int: ...
    @property
    def num_gen_params(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def config(self) -> dict[str, object]: ...
    rng_state: tuple[int, int, int, int]
    def layout(self, /) -> list[tuple[str, int, tuple[int, ...]]]: ...
    def normal(self, n: int, seed: int | None = None, /) -> _F: ...          # (n, K)
    def generate(self, z: _F, /) -> _F: ...                                 # (n, K) -> (n, D)
    def discriminate(self, x: _F, /) -> _F: ...                             # (n, D) -> (n, 1) logits
    def d_loss(self, x: _F, z: _F, grad: bool, /) -> tuple[tuple[float, float, float], _F | None]: ...
    def g_loss(self, z: _F, grad: bool, /) -> tuple[float, _F | None]: ...
    def train_step(self, x: _F, k: int, opt_g: _Optim, opt_d: _Optim, /) -> tuple[float, float, float, float]: ...

# VqVae: E = code_dim * positions per example (S), codes (n, S) int64
class VqVae:
    def __new__(cls, input_shape: tuple[int] | tuple[int, int, int], codebook_size: int, code_dim: int,
                encoder: list[_Layer], decoder: list[_Layer], likelihood: str, ema: bool, dtype: str,
                seed: int) -> VqVae: ...

class Stack:
    # one layer stack on its own flat buffer, no loss (vaecore.AutoregressivePrior's MLP)
    def __new__(cls, input_shape: tuple[int] | tuple[int, int, int], layers: list[_Layer], dtype: str,
                seed: int) -> Stack: ...
    @property
    def params(self) -> _F: ...                  # (P,) the live buffer
    @property
    def num_params(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def config(self) -> dict[str, object]: ...   # grid: (h, w), or () for one code per example
    rng_state: tuple[int, int, int, int]
    def layout(self, /) -> list[tuple[str, int, tuple[int, ...]]]: ...
    def encode(self, x: _F, /) -> _F: ...                                     # (n, D) -> z_e (n, E)
    def nearest(self, z_e: _F, /) -> tuple[NDArray[np.int64], _F]: ...       # codes (n, S), dist (n, S)
    def decode(self, codes: NDArray[np.int64], logits: bool = False, /) -> _F: ...   # (n, S) -> (n, D)
    # ((loss, recon, commitment, codebook, perplexity), grad (P,) or None)
    def loss(self, x: _F, commitment: float, grad: bool, /) -> tuple[tuple[float, float, float, float, float],
                                                                      _F | None]: ...
    def train_step(self, x: _F, commitment: float, decay: float, kind: int, lr: float, beta1: float, beta2: float,
                   adam_eps: float, momentum: float, clip_norm: float, t: NDArray[np.int64], s1: _F | None,
                   s2: _F | None, ema: _F | None, usage: NDArray[np.int64] | None,
                   /) -> tuple[float, float, float, float, float]: ...
    def input_dim(self) -> int: ...              # D
    @property
    def output_dim(self) -> int: ...             # O
    @property
    def dtype(self) -> str: ...
    @property
    def config(self) -> dict[str, object]: ...
    def layout(self, /) -> list[tuple[str, int, tuple[int, ...]]]: ...
    def forward(self, x: _F, /) -> _F: ...                                  # (n, D) -> (n, O)
    def backward(self, x: _F, dout: _F, /) -> _F: ...                       # (n, D), (n, O) -> (P,)
    def adam_step(self, grads: _F, m: _F, v: _F, t: NDArray[np.int64], lr: float, beta1: float, beta2: float,
                  eps: float, /) -> None: ...
