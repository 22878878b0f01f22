"""Where :mod:`hf_selectit.pipeline` and :mod:`hf_selectit.publishing` import the validation
figure's file name from; the figure lives in :mod:`hf_selectit.plots`."""

from .plots import VALIDATION_PLOT_FILENAME, validation_plot  # noqa: F401
