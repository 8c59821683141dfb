"""The Streamlit app: pages and the UI-side helpers around lstm_core."""
