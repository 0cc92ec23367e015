from .cli import run

if __name__ == "__main__":  # `fmflow batch --engine dask` spawns worker processes that import this module
    run()
