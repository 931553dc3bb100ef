# The streamscore image: the package, its examples, and the demo sensor model
# trained at build time (the model directory is the artifact the scorer loads).
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY features ./features
COPY models ./models
COPY schemas ./schemas
COPY examples ./examples
RUN pip install --no-cache-dir . \
 && streamscore train --config examples/sensor.toml --out artifacts/sensor-model

# One model thread: the consumer and the producer need the other cores.
ENV OMP_NUM_THREADS=1
ENTRYPOINT ["streamscore"]
CMD ["run", "--config", "examples/sensor.toml"]
