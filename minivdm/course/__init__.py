"""The course machinery: notebook setup, checks whose messages teach, and exercise generation."""

from minivdm.course.checks import check_close, check_function_output
from minivdm.course.notebook_setup import setup_notebook, show_source
