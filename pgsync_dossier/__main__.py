from pgsync_dossier.cli import main

main()
