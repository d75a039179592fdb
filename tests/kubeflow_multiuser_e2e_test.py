"""The Kubeflow end-to-end tests of kubeflow_e2e_test.py on a multi-user install (a profile namespace's
root and keys), in a file of its own so that `make test`'s workers run the two installs side by side."""

import pytest

from tests import kubeflow_e2e_test
from tests.kubeflow_e2e_test import *  # noqa: F401,F403  the same tests  pylint: disable=wildcard-import,unused-wildcard-import

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def install(tiny_h5, tmp_path_factory):  # pylint: disable=function-redefined
    return kubeflow_e2e_test.run_install("multi-user", tiny_h5, tmp_path_factory)
