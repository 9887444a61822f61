"""The dashboard's pages, one module each: its queries' use, layout and widgets (`page(settings, q)`).

Streamlit runs each file as a page script (st.navigation in app.py); imported, they render nothing."""
