"""vaecore's C core against finite differences and the float64 reference (tests/reference.py).

- Finite differences: every parameter of a float64 model, m.loss_and_grad against central
  differences of m.loss, for each activation, likelihood, VAE and AE.
- The reference: on random configurations (dims, hidden tuples with () and asymmetric
  decoders, all activations, both likelihoods, VAE and AE, float64 and float32) the C
  core's encode, reparameterize, decode, loss, gradient and a few train_steps with Adam,
  SGD with momentum and clipping must give the reference's numbers.
- Every call leaves its input arrays as they were.

Tolerances, one per dtype, for every compared quantity:
- float64: 1e-10 relative. Both sides compute the same formulas in float64 with a
  different order of operations; the differences measured stay under 2e-15 of the
  quantity's scale (1e-13 for an update, a difference of params), so 1e-10 leaves a
  wide margin, while any real bug (a wrong factor,
  a dropped term, a wrong offset in the flat buffer) is off by >= 1e-3.
- float32: 1e-4 relative. The float32 model rounds each operation to 24 bits (6e-8)
  and we compare it with the float64 reference fed the same float32 numbers (params, x,
  eps) cast to float64, so the difference is the float32 rounding alone: measured at
  most 7e-7 for gradients and 2e-6 for params after three Adam steps, 50x under the
  tolerance.
Arrays of parameter-shaped vectors (gradients, params) are compared per parameter block
(reference.blockwise_rel_error explains why); other arrays (mu, z, x_mean) by the max
error over the max entry; scalars (loss, recon, kl) by |a - b| / max(|a|, |b|).
"""
import numpy as np
import pytest

import reference
from reference import (
    ACTIVATIONS, LIKELIHOODS, Config, ReferenceVAE, blockwise_rel_error, central_difference_grad,
    param_layout, random_named_params, rel_error,
)

try:
    import vaecore
except ImportError as exc:  # collect anyway, then fail (not skip) every test with the reason
    vaecore = None
    _IMPORT_ERROR = exc


@pytest.fixture(autouse=True)
def _needs_vaecore():
    if vaecore is None:
        pytest.fail(f"import vaecore failed: {_IMPORT_ERROR!r}")


RTOL = {"float64": 1e-10, "float32": 1e-4}
DTYPES = ("float64", "float32")
BETA = 0.7  # != 1, so a forgotten beta (or a beta applied to recon) shows

# Finite differences: the step, tolerance and kink margin of tests/test_reference.py, where
# their choice is explained and measured on the reference (h = 5e-5 balances truncation
# and rounding; its worst case over ~1000 random cases is 5e-8, the tolerance 1e-6).
FD_STEP = 5e-5
FD_RTOL = 1e-6
KINK_MARGIN = 1e-3  # no pre-activation closer than 20 h to the kink of relu / leaky_relu / elu
KINKED = ("relu", "leaky_relu", "elu")


# ---------------------------------------------------------------------------
# configurations and cases

class Arch:
    """One random configuration: sizes, layers, activation and likelihood."""

    def __init__(self, D, K, B, hidden, decoder_hidden, activation, likelihood):
        self.D, self.K, self.B = D, K, B
        self.hidden, self.decoder_hidden = hidden, decoder_hidden
        self.activation, self.likelihood = activation, likelihood

    def __repr__(self):
        dec = "rev" if self.decoder_hidden is None else "-".join(map(str, self.decoder_hidden)) or "none"
        enc = "-".join(map(str, self.hidden)) or "none"
        return (f"{self.activation}-{self.likelihood}-D{self.D}K{self.K}B{self.B}"
                f"-enc_{enc}-dec_{dec}")


def _random_archs(seed=2024):
    """Ten configurations: each (activation, likelihood) pair once, random sizes (input 3-6,
    latent 2-3, batch 5-7, widths 2-8), encoders of 0, 1, 2 hidden layers in turn and
    decoders cycling through reversed(hidden), (), and their own random widths."""
    rng = np.random.default_rng(seed)
    archs = []
    for i in range(10):
        hidden = tuple(int(w) for w in rng.integers(2, 9, size=i % 3))
        decoder_choice = i % 4
        if decoder_choice == 0:
            decoder_hidden = None
        elif decoder_choice == 1:
            decoder_hidden = ()
        else:
            decoder_hidden = tuple(int(w) for w in rng.integers(2, 9, size=decoder_choice - 1))
        archs.append(Arch(D=int(rng.integers(3, 7)), K=int(rng.integers(2, 4)),
                          B=int(rng.integers(5, 8)), hidden=hidden, decoder_hidden=decoder_hidden,
                          activation=ACTIVATIONS[i % 5], likelihood=LIKELIHOODS[i // 5]))
    return archs


ARCHS = _random_archs()
KINDS = ("VAE", "AE")


def make_batch(rng, likelihood, B, D, K, dtype, variational=True):
    """x (B, D) and eps (B, K) (None for an AE) in the model's dtype. Bernoulli data lie in
    [0, 1], some exactly 0 or 1."""
    if likelihood == "gaussian":
        x = rng.normal(size=(B, D))
    else:
        x = np.where(rng.random((B, D)) < 0.3, rng.random((B, D)), rng.random((B, D)) < 0.5)
    eps = rng.normal(size=(B, K)).astype(dtype) if variational else None
    return np.asarray(x, dtype=dtype), eps


def make_case(arch, dtype, kind="VAE", seed=0, avoid_kinks=False):
    """(m, ref, x, eps): a vaecore model whose parameters are set to random values (non-zero
    biases, so a forgotten bias shows), the reference built from the very same values
    (float32 ones cast to float64), and a batch. With avoid_kinks, reseeds until every hidden
    pre-activation keeps KINK_MARGIN from 0."""
    variational = kind == "VAE"
    cls = vaecore.VAE if variational else vaecore.AE
    m = cls(arch.D, arch.K, hidden=arch.hidden, decoder_hidden=arch.decoder_hidden,
            activation=arch.activation, likelihood=arch.likelihood, dtype=dtype, seed=seed)
    config = Config(arch.activation, arch.likelihood, BETA, variational)
    for attempt in range(50):
        rng = np.random.default_rng(seed + 1000 * attempt)
        named = random_named_params(rng, arch.D, arch.K, arch.hidden, arch.decoder_hidden, variational)
        m.params[...] = np.concatenate([a.ravel() for _, a in named])  # the live buffer
        ref = ReferenceVAE(m.named_params(), config)
        x, eps = make_batch(rng, arch.likelihood, arch.B, arch.D, arch.K, dtype, variational)
        if not (avoid_kinks and arch.activation in KINKED):
            return m, ref, x, eps
        if all(np.min(np.abs(a)) > KINK_MARGIN for a in ref.preactivations(x, eps)):
            return m, ref, x, eps
    raise RuntimeError("no seed kept the pre-activations away from the kink")


def noise(eps):
    """keyword arguments for the noise: a VAE gets eps, an AE nothing"""
    return {} if eps is None else {"eps": eps}


def scalar_rel_error(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def assert_stats_close(stats, ref_stats, rtol, what):
    for key in ("loss", "recon", "kl"):
        err = scalar_rel_error(stats[key], ref_stats[key])
        assert err < rtol, f"{what} {key}: {stats[key]!r} vs reference {ref_stats[key]!r} (rel {err:.2e})"


def assert_blocks_close(actual, expected, ref, rtol, what):
    errors = blockwise_rel_error(actual, expected, ref)
    worst = max(errors, key=errors.get)
    assert errors[worst] < rtol, f"{what}: block {worst} rel error {errors[worst]:.2e} (tol {rtol:g})"


def assert_array_close(actual, expected, rtol, what):
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    err = rel_error(actual, expected)
    assert err < rtol, f"{what}: rel error {err:.2e} (tol {rtol:g})"


class Unchanged:
    """Remembers copies of arrays; check() asserts none of them changed."""

    def __init__(self, **arrays):
        self.arrays = {k: (v, v.copy()) for k, v in arrays.items() if v is not None}

    def check(self):
        for name, (now, before) in self.arrays.items():
            assert np.array_equal(now, before), f"the call modified its input {name}"


# ---------------------------------------------------------------------------
# the parameter layout

LAYOUT_CASES = [((5, 4), None), ((), None), ((3,), (6, 2)), ((4, 4), ()), ((), (5,))]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("hidden,decoder_hidden", LAYOUT_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_named_params_follow_the_contract_layout(dtype, hidden, decoder_hidden, kind):
    cls = vaecore.VAE if kind == "VAE" else vaecore.AE
    m = cls(4, 3, hidden=hidden, decoder_hidden=decoder_hidden, dtype=dtype, seed=1)
    named = m.named_params()
    expected = param_layout(4, 3, hidden, decoder_hidden, variational=kind == "VAE")
    assert [(n, a.shape) for n, a in named] == expected
    assert m.params.ndim == 1 and m.params.flags["C_CONTIGUOUS"] and m.params.dtype == np.dtype(dtype)
    assert m.params.size == sum(int(np.prod(s)) for _, s in expected)
    # the views tile the buffer in order and are live
    assert np.array_equal(np.concatenate([a.ravel() for _, a in named]), m.params)
    offset = 0
    for name, view in named:
        assert view.dtype == np.dtype(dtype), name
        assert np.shares_memory(view, m.params), f"{name} is not a view into m.params"
        m.params[offset] = 123.0
        assert view.flat[0] == 123.0, f"{name} does not start at offset {offset}"
        offset += view.size


# ---------------------------------------------------------------------------
# finite differences, float64

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_matches_central_differences(activation, likelihood, kind):
    arch = Arch(D=5, K=3, B=6, hidden=(7, 6), decoder_hidden=(8, 4), activation=activation,
                likelihood=likelihood)
    m, ref, x, eps = make_case(arch, "float64", kind, seed=3, avoid_kinks=True)
    unchanged = Unchanged(x=x, eps=eps)
    stats, grad = m.loss_and_grad(x, beta=BETA, **noise(eps))
    assert grad.shape == m.params.shape and grad.dtype == m.params.dtype

    params_before = m.params.copy()
    fd = central_difference_grad(lambda: m.loss(x, beta=BETA, **noise(eps))["loss"], m.params, FD_STEP)
    assert np.array_equal(m.params, params_before), "the finite differences did not restore m.params"
    unchanged.check()
    assert_blocks_close(grad, fd, ref, FD_RTOL, "gradient vs central differences")
    # and loss_and_grad's stats are loss's (the same C forward pass: equal to rounding)
    assert_stats_close(m.loss(x, beta=BETA, **noise(eps)), stats, 1e-14, "loss vs loss_and_grad")


# ---------------------------------------------------------------------------
# the C core against the reference

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", ARCHS, ids=repr)
def test_encode_reparameterize_decode_match_reference(arch, dtype, kind):
    m, ref, x, eps = make_case(arch, dtype, kind, seed=11)
    rtol = RTOL[dtype]
    unchanged = Unchanged(x=x)
    mu, logvar = m.encode(x)
    unchanged.check()
    ref_mu, ref_logvar = ref.encode(x)
    assert mu.dtype == np.dtype(dtype)
    assert_array_close(mu, ref_mu, rtol, "mu")
    if kind == "AE":
        assert logvar is None
        z = mu                                                      # (B, K) the AE's code is mu
    else:
        assert logvar.dtype == np.dtype(dtype)
        assert_array_close(logvar, ref_logvar, rtol, "logvar")
        unchanged = Unchanged(mu=mu, logvar=logvar, eps=eps)
        z = m.reparameterize(mu, logvar, eps=eps)                   # (B, K)
        unchanged.check()
        assert z.dtype == np.dtype(dtype)
        # the reference applies the formula to the model's own (rounded) mu and logvar
        assert_array_close(z, ref.reparameterize(mu.astype(np.float64), logvar.astype(np.float64),
                                                 eps.astype(np.float64)), rtol, "z")

    # decode on the model's z and, separately, on random codes far from the data's
    rng = np.random.default_rng(5)
    for name, codes in (("z", z), ("random z", (2 * rng.normal(size=(4, arch.K))).astype(dtype))):
        unchanged = Unchanged(z=codes)
        x_mean = m.decode(codes)                                    # (n, D)
        unchanged.check()
        assert x_mean.dtype == np.dtype(dtype)
        assert_array_close(x_mean, ref.decode(codes), rtol, f"decode({name})")
        if arch.likelihood == "bernoulli":
            assert np.all((x_mean >= 0) & (x_mean <= 1)), "bernoulli decode must return probabilities"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", ARCHS, ids=repr)
def test_loss_and_grad_match_reference(arch, dtype, kind):
    m, ref, x, eps = make_case(arch, dtype, kind, seed=12)
    rtol = RTOL[dtype]
    unchanged = Unchanged(x=x, eps=eps)
    stats = m.loss(x, beta=BETA, **noise(eps))
    stats2, grad = m.loss_and_grad(x, beta=BETA, **noise(eps))
    unchanged.check()
    ref_stats, ref_grad = ref.loss_and_grad(x, eps)
    assert set(stats) >= {"loss", "recon", "kl"} and all(isinstance(stats[k], float) for k in ref_stats)
    assert_stats_close(stats, ref_stats, rtol, "loss")
    assert_stats_close(stats2, ref_stats, rtol, "loss_and_grad")
    if kind == "AE":
        assert stats["kl"] == 0.0 and stats["loss"] == stats["recon"]
    assert grad.shape == m.params.shape and grad.dtype == np.dtype(dtype)
    assert_blocks_close(grad, ref_grad, ref, rtol, "gradient")


def test_initial_params_match_reference_too():
    # the model's own initialisation (no overwrite of m.params), to be sure nothing in the
    # tests above depends on our parameter values
    for kind, cls in (("VAE", vaecore.VAE), ("AE", vaecore.AE)):
        m = cls(5, 2, hidden=(6, 4), activation="elu", likelihood="bernoulli", dtype="float64", seed=7)
        ref = ReferenceVAE(m.named_params(), Config("elu", "bernoulli", BETA, kind == "VAE"))
        x, eps = make_batch(np.random.default_rng(0), "bernoulli", 6, 5, 2, "float64", kind == "VAE")
        stats, grad = m.loss_and_grad(x, beta=BETA, **noise(eps))
        ref_stats, ref_grad = ref.loss_and_grad(x, eps)
        assert_stats_close(stats, ref_stats, RTOL["float64"], f"{kind} at init")
        assert_blocks_close(grad, ref_grad, ref, RTOL["float64"], f"{kind} gradient at init")


# ---------------------------------------------------------------------------
# train_step against the reference's optimizers

def make_optimizer(module, model, name, clip_norm):
    """The same optimizer from vaecore or from the reference (their signatures match).
    lr is large enough that an update is well above float32 rounding of the params."""
    if name == "adam":
        return module.Adam(model, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, clip_norm=clip_norm)
    return module.SGD(model, 0.02, momentum=0.9, clip_norm=clip_norm)


STEPS = 3  # > 1, so Adam's bias correction at t = 2, 3 and SGD's momentum buffer matter


@pytest.mark.parametrize("clip", [None, "active", "inactive"])
@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", ARCHS, ids=repr)
def test_train_step_matches_reference(arch, dtype, kind, opt_name, clip):
    m, ref, x, _ = make_case(arch, dtype, kind, seed=13)
    rtol = RTOL[dtype]
    variational = kind == "VAE"
    rng = np.random.default_rng(99)
    epss = [make_batch(rng, arch.likelihood, arch.B, arch.D, arch.K, dtype, variational)[1]
            for _ in range(STEPS)]

    # clip_norm: a tenth of the first gradient's norm (clipping acts at every step), or 100x
    # it (it must not)
    grad_norm = float(np.linalg.norm(ref.loss_and_grad(x, epss[0])[1]))
    clip_norm = {None: None, "active": 0.1 * grad_norm, "inactive": 100.0 * grad_norm}[clip]
    opt = make_optimizer(vaecore, m, opt_name, clip_norm)
    ref_opt = make_optimizer(reference, ref, opt_name, clip_norm)

    for step, eps in enumerate(epss):
        before = m.params.copy()
        unchanged = Unchanged(x=x, eps=eps)
        stats = m.train_step(x, opt, beta=BETA, **noise(eps))
        unchanged.check()
        ref_before = ref.params.copy()
        if clip == "active":
            assert np.linalg.norm(ref.loss_and_grad(x, eps)[1]) > clip_norm, "clipping would not act"
        ref_stats = ref.train_step(x, ref_opt, eps)                 # stats before the update
        what = f"step {step + 1}"
        assert_stats_close(stats, ref_stats, rtol, what)
        assert not np.array_equal(m.params, before), f"{what}: params did not change"
        assert_blocks_close(m.params, ref.params, ref, rtol, f"{what}: params")
        if dtype == "float64":
            # the update itself, p_new - p_old: a difference of params, so in float32 it
            # carries their rounding (6e-8 * |p|), more than 1e-4 of a small block's update;
            # in float64 that rounding is 1e-16 * |p| and the update is held to 1e-10
            assert_blocks_close(m.params - before, ref.params - ref_before, ref, rtol,
                                f"{what}: update")
