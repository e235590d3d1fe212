"""Tests of the float64 reference (tests/reference.py) itself; they need only NumPy.

The reference is what vaecore's C core is judged against, so it is checked here in
two independent ways: its gradient against central finite differences of its own
loss (the backward pass matches the forward pass), and its forward pass and
optimizers against hand-computed values, closed forms and numerical integrals
(the forward pass matches the formulas of the contract).
"""
import math

import numpy as np
import pytest

from reference import (
    ACTIVATIONS, LIKELIHOODS, Adam, Config, ReferenceVAE, SGD, activation_backward,
    activation_forward, bernoulli_recon, blockwise_rel_error, central_difference_grad,
    clip_grad_norm, gaussian_kl, linear_backward, linear_forward, param_layout,
    random_named_params, rel_error, sigmoid, softplus,
)

# Finite differences, float64. A central difference has a truncation error of about
# h^2 |f'''| / 6 and a rounding error of about eps_machine * |loss| / h. Measured over
# ~1000 random cases of every activation, likelihood and architecture used here: h = 1e-6
# gives errors up to 3e-6 (rounding: blocks with gradients ~1e-4 under a loss ~4),
# h = 1e-4 up to 2e-7 (truncation); h = 5e-5 (about 5e-5 of the parameters' O(1) scale)
# balances the two, worst case 5e-8, 20x under the tolerance. A real bug (a missing 1/2,
# a dropped term, a wrong sign or index) gives relative errors >= 1e-3. Errors are
# measured per parameter block: see reference.blockwise_rel_error for the definition and
# why it is the meaningful one.
FD_STEP = 5e-5
FD_RTOL = 1e-6
# ReLU, leaky ReLU and ELU have a kink (ELU: in the second derivative) at 0; a central
# difference straddling it measures neither side's slope. A step of h moves a
# pre-activation by about h * |the layer's input| * (the gain of the layers between), a
# few h, so batches whose pre-activations all keep 20 h = 1e-3 away from 0 never straddle
# a kink; make_case skips seeds that don't.
KINK_MARGIN = 1e-3
KINKED = ("relu", "leaky_relu", "elu")

# (hidden, decoder_hidden): symmetric default, asymmetric, and no hidden layers at all
ARCHS = [((7, 6), None), ((4,), (5, 3)), ((), ()), ((), (4,))]


def make_case(seed, activation, likelihood, variational, hidden=(7, 6), decoder_hidden=None,
              D=5, K=3, B=6, beta=0.7):
    """A reference model with random parameters and a batch (x, eps) whose hidden
    pre-activations all keep KINK_MARGIN from 0; tries seed, seed + 1000, ..."""
    for attempt in range(50):
        rng = np.random.default_rng(seed + 1000 * attempt)
        named = random_named_params(rng, D, K, hidden, decoder_hidden, variational)
        ref = ReferenceVAE(named, Config(activation, likelihood, beta, variational))
        if likelihood == "gaussian":
            x = rng.normal(size=(B, D))                                  # (B, D)
        else:
            x = np.where(rng.random((B, D)) < 0.3, rng.random((B, D)), rng.random((B, D)) < 0.5)
            x = x.astype(np.float64)                                    # (B, D) in [0, 1], some 0 / 1
        eps = rng.normal(size=(B, K)) if variational else None          # (B, K)
        pre = ref.preactivations(x, eps)
        if activation not in KINKED or all(np.min(np.abs(a)) > KINK_MARGIN for a in pre):
            return ref, x, eps
    raise RuntimeError("no seed kept the pre-activations away from the kink")


def fd_errors(ref, x, eps):
    """{block name: relative error} of the reference gradient vs central differences."""
    _, grad = ref.loss_and_grad(x, eps)
    fd = central_difference_grad(lambda: ref.loss(x, eps)["loss"], ref.params, FD_STEP)
    return blockwise_rel_error(grad, fd, ref)


# ---------------------------------------------------------------------------
# the backward pass agrees with the forward pass

@pytest.mark.parametrize("variational", [True, False], ids=["vae", "ae"])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_matches_central_differences(activation, likelihood, variational):
    for seed in range(2):
        ref, x, eps = make_case(seed, activation, likelihood, variational)
        errors = fd_errors(ref, x, eps)
        worst = max(errors, key=errors.get)
        assert errors[worst] < FD_RTOL, f"seed {seed}: {worst} rel error {errors[worst]:.2e}"


@pytest.mark.parametrize("variational", [True, False], ids=["vae", "ae"])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("hidden,decoder_hidden", ARCHS)
def test_gradient_matches_central_differences_across_architectures(
        hidden, decoder_hidden, likelihood, variational):
    ref, x, eps = make_case(7, "elu", likelihood, variational, hidden, decoder_hidden, D=4, K=2, B=5)
    errors = fd_errors(ref, x, eps)
    worst = max(errors, key=errors.get)
    assert errors[worst] < FD_RTOL, f"{worst} rel error {errors[worst]:.2e}"


def test_gradient_scales_with_beta_only_through_kl():
    # loss(beta) = recon + beta * kl, so grad(beta=1) - grad(beta=0) is the KL gradient and
    # grad(beta) = grad(0) + beta * that; float64 sums, so 1e-12 relative.
    ref, x, eps = make_case(3, "tanh", "gaussian", True)
    grads = {}
    for beta in (0.0, 0.7, 1.0):
        ref.config.beta = beta
        grads[beta] = ref.loss_and_grad(x, eps)[1]
    expected = grads[0.0] + 0.7 * (grads[1.0] - grads[0.0])
    assert rel_error(grads[0.7], expected) < 1e-12


def test_central_difference_helper_is_exact_on_a_quadratic_and_restores_params():
    # f(p) = sum c p^2 + p: the central difference of a quadratic has no truncation error,
    # so only rounding (~eps * |f| / h ~ 1e-11 absolute) remains.
    rng = np.random.default_rng(0)
    p = rng.normal(size=20)
    c = rng.normal(size=20)
    before = p.copy()
    fd = central_difference_grad(lambda: float(np.sum(c * p ** 2 + p)), p, FD_STEP)
    assert rel_error(fd, 2 * c * before + 1) < 1e-9
    assert np.array_equal(p, before)


def test_central_difference_helper_restores_params_when_f_raises():
    p = np.arange(3.0)

    def f():
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        central_difference_grad(f, p, FD_STEP)
    assert np.array_equal(p, np.arange(3.0))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_layer_backward_with_a_fake_loss(activation):
    # one hidden layer y = f(inp @ W + b) alone, under the fake loss (y * dout).sum() with a
    # random dout so every output element matters; this also checks dinp, which the full
    # model's check never needs (nothing upstream of x). Same FD step and tolerance as above.
    rng = np.random.default_rng(2)  # its pre-activations keep >= 0.09 from 0
    inp, W, b = rng.normal(size=(5, 4)), rng.normal(size=(4, 3)) / 2, rng.normal(size=3)
    dout = rng.normal(size=(5, 3))
    if activation in KINKED:
        assert np.min(np.abs(linear_forward(inp, W, b))) > KINK_MARGIN, "pick another seed"

    def fake_loss():
        return float(np.sum(activation_forward(linear_forward(inp, W, b), activation) * dout))

    a = linear_forward(inp, W, b)                                       # (5, 3)
    dinp, dW, db = linear_backward(activation_backward(dout, a, activation), inp, W)
    for name, param, grad in (("inp", inp, dinp), ("W", W, dW), ("b", b, db)):
        fd = central_difference_grad(fake_loss, param, FD_STEP)
        assert rel_error(grad, fd) < FD_RTOL, f"d{name}: rel error {rel_error(grad, fd):.2e}"


# ---------------------------------------------------------------------------
# the forward pass agrees with the contract's formulas

# f(a) at a = -2, -0.5, 0.5, 3 from the definitions, written out with math.* scalars
ACTIVATION_VALUES = {
    "tanh": [math.tanh(-2), math.tanh(-0.5), math.tanh(0.5), math.tanh(3)],
    "relu": [0.0, 0.0, 0.5, 3.0],
    "leaky_relu": [-0.02, -0.005, 0.5, 3.0],
    "sigmoid": [1 / (1 + math.exp(2)), 1 / (1 + math.exp(0.5)), 1 / (1 + math.exp(-0.5)),
                1 / (1 + math.exp(-3))],
    "elu": [math.exp(-2) - 1, math.exp(-0.5) - 1, 0.5, 3.0],
}
# f'(a) at the same points
ACTIVATION_SLOPES = {
    "tanh": [1 - math.tanh(a) ** 2 for a in (-2, -0.5, 0.5, 3)],
    "relu": [0.0, 0.0, 1.0, 1.0],
    "leaky_relu": [0.01, 0.01, 1.0, 1.0],
    "sigmoid": [math.exp(-a) / (1 + math.exp(-a)) ** 2 for a in (-2, -0.5, 0.5, 3)],
    "elu": [math.exp(-2), math.exp(-0.5), 1.0, 1.0],
}


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_values_and_slopes(activation):
    # a few ulps of float64 apart at most: 1e-14 relative
    a = np.array([-2.0, -0.5, 0.5, 3.0])
    np.testing.assert_allclose(activation_forward(a, activation), ACTIVATION_VALUES[activation],
                               rtol=1e-14, atol=0)
    np.testing.assert_allclose(activation_backward(np.ones(4), a, activation),
                               ACTIVATION_SLOPES[activation], rtol=1e-14, atol=0)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activations_do_not_overflow(activation):
    # pytest turns NumPy's overflow RuntimeWarning into an error (filterwarnings = error)
    a = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    y = activation_forward(a, activation)
    d = activation_backward(np.ones(5), a, activation)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(d))


def test_sigmoid_and_softplus_are_stable_at_extreme_logits():
    l = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    np.testing.assert_allclose(sigmoid(l), [0.0, math.exp(-40) / (1 + math.exp(-40)), 0.5,
                                            1 / (1 + math.exp(-40)), 1.0], rtol=1e-15, atol=0)
    np.testing.assert_allclose(softplus(l), [0.0, math.log1p(math.exp(-40)), math.log(2),
                                             40 + math.log1p(math.exp(-40)), 1000.0],
                               rtol=1e-15, atol=0)


def test_bernoulli_recon_is_the_negative_log_likelihood():
    # -sum_j [x log p + (1 - x) log(1 - p)] with p = sigmoid(l), computed the naive way
    # (fine for |l| <= 5); the two agree to rounding, 1e-13 relative.
    rng = np.random.default_rng(1)
    logits = rng.uniform(-5, 5, size=(6, 4))
    x = rng.random((6, 4))
    p = 1 / (1 + np.exp(-logits))
    naive = -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=1)
    np.testing.assert_allclose(bernoulli_recon(x, logits), naive, rtol=1e-13, atol=0)


@pytest.mark.parametrize("mu,logvar", [(0.0, 0.0), (1.3, 0.0), (-0.4, -1.7), (0.8, 1.2)])
def test_gaussian_kl_matches_a_numerical_integral(mu, logvar):
    # KL(q || p) = integral q(z) (log q(z) - log p(z)) dz for q = N(mu, e^logvar), p = N(0, 1),
    # by the trapezoid rule over mu +- 14 sd on 200001 points: for a smooth, fast decaying
    # integrand the rule is accurate far beyond 1e-9, the tolerance.
    sd = math.exp(0.5 * logvar)
    z = np.linspace(mu - 14 * sd, mu + 14 * sd, 200001)
    log_q = -0.5 * ((z - mu) / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi)
    log_p = -0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # NumPy 2 renamed trapz
    integral = trapezoid(np.exp(log_q) * (log_q - log_p), z)
    kl = gaussian_kl(np.array([[mu]]), np.array([[logvar]]))
    assert kl.shape == (1,)
    assert abs(kl[0] - integral) < 1e-9


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_forward_by_hand_on_a_one_dimensional_model(likelihood):
    # D = K = 1 with no hidden layers: every step is a scalar formula of the contract.
    # The same float64 operations in a different order: 1e-14 relative.
    w_mu, b_mu, w_lv, b_lv, w_out, b_out = 0.8, -0.3, -0.5, 0.2, 1.5, 0.1
    named = [("enc.mu.W", [[w_mu]]), ("enc.mu.b", [b_mu]), ("enc.logvar.W", [[w_lv]]),
             ("enc.logvar.b", [b_lv]), ("dec.out.W", [[w_out]]), ("dec.out.b", [b_out])]
    beta = 0.7
    ref = ReferenceVAE(named, Config("tanh", likelihood, beta, True))
    xs, es = [0.9, 0.25], [0.6, -1.1]

    recons, kls = [], []
    for x, e in zip(xs, es):
        mu = w_mu * x + b_mu
        logvar = w_lv * x + b_lv
        z = mu + math.sqrt(math.exp(logvar)) * e
        out = w_out * z + b_out
        if likelihood == "gaussian":
            recons.append((x - out) ** 2)
        else:
            p = 1 / (1 + math.exp(-out))
            recons.append(-(x * math.log(p) + (1 - x) * math.log(1 - p)))
        kls.append(0.5 * (mu ** 2 + math.exp(logvar) - 1 - logvar))
    x, eps = np.array(xs)[:, None], np.array(es)[:, None]
    stats = ref.loss(x, eps)
    np.testing.assert_allclose(stats["recon"], np.mean(recons), rtol=1e-14)
    np.testing.assert_allclose(stats["kl"], np.mean(kls), rtol=1e-14)
    np.testing.assert_allclose(stats["loss"], np.mean(recons) + beta * np.mean(kls), rtol=1e-14)

    mu, logvar = ref.encode(x)
    np.testing.assert_allclose(mu[:, 0], [w_mu * v + b_mu for v in xs], rtol=1e-14)
    np.testing.assert_allclose(logvar[:, 0], [w_lv * v + b_lv for v in xs], rtol=1e-14)
    z = ref.reparameterize(mu, logvar, eps)
    out = w_out * z[:, 0] + b_out
    expected_mean = 1 / (1 + np.exp(-out)) if likelihood == "bernoulli" else out
    np.testing.assert_allclose(ref.decode(z)[:, 0], expected_mean, rtol=1e-14)


def test_autoencoder_mode_uses_z_equal_mu_and_no_kl():
    # the AE's recon equals the VAE's recon with eps = 0 (z = mu) for the same shared
    # weights, kl is 0 and beta does nothing; 1e-14 relative
    rng = np.random.default_rng(5)
    named_vae = random_named_params(rng, 4, 2, (5,), (3,), variational=True)
    named_ae = [(n, a) for n, a in named_vae if not n.startswith("enc.logvar")]
    x = rng.normal(size=(6, 4))
    vae = ReferenceVAE(named_vae, Config("elu", "gaussian", 1.0, True))
    for beta in (0.0, 3.0):
        ae = ReferenceVAE(named_ae, Config("elu", "gaussian", beta, False))
        stats = ae.loss(x)
        assert stats["kl"] == 0.0
        np.testing.assert_allclose(stats["loss"], stats["recon"], rtol=1e-14)
        np.testing.assert_allclose(stats["recon"], vae.loss(x, np.zeros((6, 2)))["recon"], rtol=1e-14)
    mu, logvar = ae.encode(x)
    assert logvar is None and mu.shape == (6, 2)


def test_loss_is_mean_recon_plus_beta_kl():
    ref, x, eps = make_case(11, "sigmoid", "bernoulli", True, beta=2.5)
    stats = ref.loss(x, eps)
    np.testing.assert_allclose(stats["loss"], stats["recon"] + 2.5 * stats["kl"], rtol=1e-14)


# ---------------------------------------------------------------------------
# optimizers and clipping against hand-computed steps

class _Flat:
    """just enough of a model for the optimizers: a flat params buffer"""

    def __init__(self, params):
        self.params = np.array(params, dtype=np.float64)


def test_adam_matches_pytorch_written_out():
    # torch.optim.Adam's single-tensor step, written as PyTorch writes it: step_size =
    # lr / bias_correction1, denom = sqrt(v) / sqrt(bias_correction2) + eps. Same math as the
    # reference's form, different rounding: 1e-14 relative.
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-8
    p0 = np.array([0.5, -1.0, 2.0])
    grads = [np.array([0.3, -0.2, 0.0]), np.array([-0.1, -0.4, 1e-3]), np.array([0.2, 0.1, -2.0])]
    model = _Flat(p0)
    opt = Adam(model, lr=lr, betas=(b1, b2), eps=eps)
    p, m, v = p0.copy(), np.zeros(3), np.zeros(3)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps
        p = p - (lr / (1 - b1 ** t)) * m / denom
        opt.step(model.params, g)
        np.testing.assert_allclose(model.params, p, rtol=1e-14, atol=0)
    assert opt.t == 3


def test_adam_first_step_moves_each_param_by_lr_times_sign():
    # at t = 1 the bias-corrected update is lr * g / (|g| + eps): lr * sign(g) up to eps / |g|
    model = _Flat([1.0, 2.0, 3.0])
    Adam(model, lr=0.1).step(model.params, np.array([0.5, -3.0, 0.0]))
    np.testing.assert_allclose(model.params, [0.9, 2.1, 3.0], rtol=1e-7, atol=0)


def test_sgd_momentum_matches_hand_computed_steps():
    # buf1 = g1, buf2 = 0.9 g1 + g2; p2 = p0 - lr (buf1 + buf2); the plain SGD ignores history
    g1, g2, lr = np.array([1.0, -2.0]), np.array([0.5, 0.5]), 0.1
    model = _Flat([0.0, 0.0])
    opt = SGD(model, lr, momentum=0.9)
    opt.step(model.params, g1)
    np.testing.assert_allclose(model.params, -lr * g1, rtol=1e-15)
    opt.step(model.params, g2)
    np.testing.assert_allclose(model.params, -lr * g1 - lr * (0.9 * g1 + g2), rtol=1e-15)

    plain = _Flat([0.0, 0.0])
    opt = SGD(plain, lr)
    opt.step(plain.params, g1)
    opt.step(plain.params, g2)
    np.testing.assert_allclose(plain.params, -lr * (g1 + g2), rtol=1e-15)


def test_clip_grad_norm_like_pytorch():
    g = np.array([3.0, -4.0])  # norm 5
    before = g.copy()
    clipped, total = clip_grad_norm(g, 1.0)
    assert total == 5.0
    np.testing.assert_allclose(clipped, g * (1.0 / (5.0 + 1e-6)), rtol=1e-15)
    assert np.array_equal(g, before), "the input gradient must not change"
    unchanged, _ = clip_grad_norm(g, 10.0)  # coef = 10 / 5 > 1: no scaling
    assert np.array_equal(unchanged, g)
    # coef just below 1 (max_norm = total) still scales, by 5 / (5 + 1e-6)
    almost, _ = clip_grad_norm(g, 5.0)
    np.testing.assert_allclose(almost, g * 5.0 / (5.0 + 1e-6), rtol=1e-15)


def test_sgd_clips_before_the_update():
    model = _Flat([1.0, 1.0])
    SGD(model, 0.5, clip_norm=1.0).step(model.params, np.array([3.0, -4.0]))
    np.testing.assert_allclose(model.params, [1 - 0.5 * 0.6, 1 + 0.5 * 0.8], rtol=1e-6)


def test_train_step_updates_params_by_the_optimizer_and_returns_pre_update_stats():
    ref, x, eps = make_case(2, "tanh", "gaussian", True)
    before = ref.params.copy()
    stats0, grad = ref.loss_and_grad(x, eps)
    stats = ref.train_step(x, SGD(ref, 0.05), eps)
    assert stats == stats0
    np.testing.assert_allclose(ref.params, before - 0.05 * grad, rtol=1e-15)
    assert np.shares_memory(ref.p["enc.0.W"], ref.params)


# ---------------------------------------------------------------------------
# layout, validation, inputs left alone

def test_param_layout_follows_the_contract():
    assert param_layout(5, 2, (4, 3)) == [
        ("enc.0.W", (5, 4)), ("enc.0.b", (4,)), ("enc.1.W", (4, 3)), ("enc.1.b", (3,)),
        ("enc.mu.W", (3, 2)), ("enc.mu.b", (2,)), ("enc.logvar.W", (3, 2)), ("enc.logvar.b", (2,)),
        ("dec.0.W", (2, 3)), ("dec.0.b", (3,)), ("dec.1.W", (3, 4)), ("dec.1.b", (4,)),
        ("dec.out.W", (4, 5)), ("dec.out.b", (5,))]
    assert param_layout(5, 2, (), variational=False) == [
        ("enc.mu.W", (5, 2)), ("enc.mu.b", (2,)), ("dec.out.W", (2, 5)), ("dec.out.b", (5,))]
    assert [n for n, _ in param_layout(3, 2, (4,), (6, 7))][-6:] == [
        "dec.0.W", "dec.0.b", "dec.1.W", "dec.1.b", "dec.out.W", "dec.out.b"]


def test_reference_rejects_a_wrong_layout_and_bad_config():
    named = random_named_params(np.random.default_rng(0), 4, 2, (3,))
    with pytest.raises(ValueError, match="layout"):
        ReferenceVAE(named[2:4] + named[:2] + named[4:])                 # enc.mu before enc.0
    with pytest.raises(ValueError, match="layout"):
        ReferenceVAE(named, Config(variational=False))                   # has logvar: a VAE
    bad = [(n, a[:-1] if n == "dec.0.b" else a) for n, a in named]
    with pytest.raises(ValueError, match="layout"):
        ReferenceVAE(bad)                                                # dec.0.b too short
    with pytest.raises(ValueError, match="layout"):
        ReferenceVAE(named[:-2])                                         # no dec.out
    with pytest.raises(ValueError, match="activation"):
        Config(activation="gelu")
    with pytest.raises(ValueError, match="likelihood"):
        Config(likelihood="poisson")
    ref = ReferenceVAE(named)
    with pytest.raises(ValueError, match="eps"):
        ref.loss(np.zeros((3, 4)))                                       # no eps for a VAE
    with pytest.raises(ValueError, match="eps"):
        ref.loss(np.zeros((3, 4)), np.zeros((3, 3)))                     # wrong eps shape


def test_reference_does_not_modify_its_inputs():
    rng = np.random.default_rng(4)
    named = random_named_params(rng, 4, 2, (5,))
    named_before = [(n, a.copy()) for n, a in named]
    x, eps = rng.normal(size=(5, 4)), rng.normal(size=(5, 2))
    x0, eps0 = x.copy(), eps.copy()
    ref = ReferenceVAE(named, Config("relu", "gaussian", 0.7))
    ref.loss_and_grad(x, eps)
    ref.train_step(x, Adam(ref, lr=0.1), eps)
    mu, logvar = ref.encode(x)
    mu0, logvar0 = mu.copy(), logvar.copy()
    z = ref.reparameterize(mu, logvar, eps)
    z0 = z.copy()
    ref.decode(z)
    assert np.array_equal(x, x0) and np.array_equal(eps, eps0)
    assert np.array_equal(mu, mu0) and np.array_equal(logvar, logvar0) and np.array_equal(z, z0)
    for (n, a), (_, a0) in zip(named, named_before):
        assert np.array_equal(a, a0), f"{n} changed: the reference must work on its own copy"
    assert not np.array_equal(ref.params, np.concatenate([a.ravel() for _, a in named]))


def test_the_contract_activations_and_likelihoods_are_all_tested():
    # every parametrization above runs over these tuples; dropping one would silently
    # drop its tests
    assert ACTIVATIONS == ("tanh", "relu", "leaky_relu", "sigmoid", "elu")
    assert LIKELIHOODS == ("gaussian", "bernoulli")
