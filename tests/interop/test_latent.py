"""Latent posterior sampling on a linear-Gaussian latent model with a linear decoder: the posterior
of x = D z given y = A x + noise is Gaussian in closed form."""

import math

import pytest
import torch

from flowbridge.analytic import GaussianMixture
from flowbridge.interop import LatentField
from flowbridge.inverse import Gaussian, Lambda, MatrixOperator, Measurement, compose_with_decoder, sample_latent
from tests.inverse.test_gaussian_posterior import chain_posterior, standardised_errors


def latent_problem(seed=0, d_z=3, d=5, d_y=2):
    g = torch.Generator().manual_seed(seed)
    l = torch.randn(d_z, d_z, generator=g, dtype=torch.float64) / math.sqrt(d_z)
    cov_z = l @ l.T + 0.3 * torch.eye(d_z, dtype=torch.float64)
    mean_z = torch.randn(d_z, generator=g, dtype=torch.float64)
    decoder = torch.randn(d, d_z, generator=g, dtype=torch.float64)
    a = torch.randn(d_y, d, generator=g, dtype=torch.float64)
    z_true = mean_z + torch.linalg.cholesky(cov_z) @ torch.randn(d_z, generator=g, dtype=torch.float64)
    sigma = 0.3
    y = a @ decoder @ z_true + sigma * torch.randn(d_y, generator=g, dtype=torch.float64)
    prior = GaussianMixture(torch.ones(1, dtype=torch.float64), mean_z[None], cov_z[None])
    return prior, decoder, Measurement(y, MatrixOperator(a), Gaussian(sigma))


@pytest.mark.parametrize("method,particles", [("mcgdiff", 16), ("tds", 16)])
def test_latent_posterior_matches_the_exact_moments(method, particles):
    prior, decoder, meas = latent_problem()
    latent = LatentField(prior.field("vp"), encoder=None, decoder=MatrixOperator(decoder))
    out = sample_latent(latent, meas, method, latent_shape=(3,), num_samples=1500, steps=100, particles=particles,
                        generator=torch.Generator().manual_seed(0))
    # The exact target of the discretised chain, in latent space (see tests/inverse), then decoded.
    latent_meas = Measurement(meas.y, MatrixOperator(meas.operator.matrix @ decoder), meas.noise)
    mean_z, cov_z = chain_posterior(prior, latent_meas, 100)
    z_mean, z_cov = standardised_errors(out.latents, mean_z, cov_z)
    assert z_mean < 5.0 and z_cov < 5.5, (z_mean, z_cov)
    torch.testing.assert_close(out.samples, out.latents @ decoder.T)
    x_mean_err = (out.samples.mean(0) - decoder @ mean_z).abs().max()
    assert float(x_mean_err) < 5 * float(torch.sqrt(torch.diagonal(decoder @ cov_z @ decoder.T).max() / 1500))


def test_composition_keeps_svd_for_matrices_and_requirements_are_checked():
    prior, decoder, meas = latent_problem()
    composed = compose_with_decoder(meas.operator, MatrixOperator(decoder), (3,))
    assert isinstance(composed, MatrixOperator)
    torch.testing.assert_close(composed.matrix, meas.operator.matrix @ decoder)
    # A nonlinear, non-differentiable decoder: SVD and gradient samplers refuse clearly.
    latent = LatentField(prior.field("vp"), None, Lambda(lambda z: torch.tanh(z @ decoder.T.to(z)), input_shape=(3,), differentiable=False))
    with pytest.raises((ValueError, TypeError), match="mcgdiff"):
        sample_latent(latent, meas, "mcgdiff", latent_shape=(3,), num_samples=4, particles=4)
    with pytest.raises(ValueError, match="no encoder"):
        latent.encode(torch.zeros(1, 5))
