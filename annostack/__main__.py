from annostack.cli import main

# Guarded: worker processes started with `spawn` (apps.offload) import this module again.
if __name__ == "__main__":
    main()
