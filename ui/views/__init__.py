"""The app's pages, run by ``st.navigation`` in ``ui/main.py`` (scripts, not modules to import)."""
