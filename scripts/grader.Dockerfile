# `minivdm grade` in a container: the real boundary around students' code. Inside it a notebook can reach
# no network, write nothing but the container's own files and the gradebook folder, and use at most the
# memory and CPUs given to the container; the submissions are mounted read-only. (Not built by the tests:
# CI machines have no Docker daemon.)
#
# Build once, with the network (it installs the CPU build of torch and minivdm with its `grade` extra):
#   docker build -f scripts/grader.Dockerfile -t minivdm-grader .
# Grade, offline (absolute paths; the gradebook, summary, reports and resume state land in /grades):
#   docker run --rm --network none --memory 8g --cpus 2 --pids-limit 512 --user "$(id -u):$(id -g)" \
#     -v /abs/path/submissions:/submissions:ro -v /abs/path/grades:/grades \
#     minivdm-grader /submissions --out /grades/gradebook.csv --jobs 2
FROM python:3.11-slim
WORKDIR /minivdm
COPY pyproject.toml README.md ./
COPY minivdm ./minivdm
COPY data ./data
COPY exercises ./exercises
RUN pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir -e ".[grade]" \
    && python -m ipykernel install --sys-prefix --name python3
# students' code runs as this user, not as root
RUN useradd --create-home grader
USER grader
ENTRYPOINT ["python", "-m", "minivdm", "grade"]
