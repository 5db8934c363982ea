"""The verifier's fit: averaged boosted models exported as one sum of trees score what scikit-learn's
models score together."""

from __future__ import annotations

import numpy as np

from evals.fit_cache import MODEL, fit
from rag.cache.verifier import FEATURES


def test_the_exported_verifier_is_the_average_of_its_models_log_odds() -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, len(FEATURES)))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=300) > 0).astype(int)
    weight = np.ones(300)
    verifier = fit(X, y, weight, seed=2, bags=3)
    models = [
        GradientBoostingClassifier(random_state=2 * 3 + bag, **MODEL).fit(X, y, sample_weight=weight)
        for bag in range(3)
    ]
    log_odds = np.mean([m.decision_function(X[:25]) for m in models], axis=0)
    expected = 1 / (1 + np.exp(-log_odds))
    got = np.array([verifier.probability(list(x)) for x in X[:25]])
    assert len(verifier.trees) == 3 * MODEL["n_estimators"]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # and the average differs from any one model's: the bags are not copies of each other
    single = 1 / (1 + np.exp(-models[0].decision_function(X[:25])))
    assert np.abs(single - expected).max() > 1e-3
