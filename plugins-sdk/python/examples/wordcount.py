#!/usr/bin/env python3
"""An OmniQ plugin in Python: counts the words of its payload.

Install the SDK (see ../README.md), make this file executable and copy it
into the runner's plugins directory; then

    omniq-submit wordcount 'the quick brown fox' --wait

prints 4. A payload that is not UTF-8 fails at once (permanent
ValidationError): retrying cannot fix it.
"""

import omniq_plugin as omniq

mux = omniq.Mux()


@mux.function("wordcount", timeout=30, max_retries=3, concurrency=8,
              description="counts the words of a UTF-8 payload")
def wordcount(task):
    try:
        text = task.payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise omniq.permanent(omniq.with_type("ValidationError", err))
    task.report_progress(0.5, "counting")
    return str(len(text.split()))


if __name__ == "__main__":
    omniq.serve(mux, name="wordcount", version="1.0.0")
