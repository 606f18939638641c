"""The course machinery: notebook setup, checks whose messages teach, and exercise generation."""

from minivdm.course.checks import CheckFailed, check_close, check_equal, check_function_output, check_that
from minivdm.course.notebook_setup import setup_notebook, show_source
