"""A small labelled set of first customer mails (subject, first words) in English, German and French.

Each group is one recurring question as customers actually phrase it: reply prefixes,
ticket tags, typos, generic subjects with the question in the body, other word orders.
`ONE_OFFS` recur nowhere and belong in no group. Used to measure question grouping.
"""

GROUPS: dict[str, list[tuple[str, str]]] = {
    "en-order-status": [
        ("Where is my order?", "Hi, I ordered a week ago and nothing has arrived yet."),
        ("where is my order", "Hello, my order 4411 has not arrived."),
        ("Order not arrived yet", "I placed an order on Monday, where is it?"),
        ("Re: Where is my order #5521", "Still waiting for the parcel."),
        ("My order hasn't arrived", "It has been 10 days since I ordered."),
        ("Question", "Where is my order? I paid last Tuesday."),
        ("Where's my order??", "Nothing arrived, tracking shows nothing."),
        ("Order still not delivered", "My order was supposed to arrive yesterday."),
    ],
    "en-refund": [
        ("Refund request", "I would like a refund for my last purchase."),
        ("Request for refund", "Please refund order 8812, the item was broken."),
        ("How do I get a refund?", "The shoes do not fit, how can I get my money back?"),
        ("refund please", "I returned the item two weeks ago and got no refund."),
        ("Re: Refund request [#1203]", "Any news on my refund?"),
        ("Where is my refund", "You received my return but I have no refund yet."),
        ("Refund not received", "I sent the item back, still no refund."),
    ],
    "en-login": [
        ("Can't log in", "I cannot log in to my account since yesterday."),
        ("Cannot login to my account", "The site says my password is wrong."),
        ("Password reset not working", "I never get the reset email."),
        ("forgot my password", "How can I reset my password?"),
        ("Login problem", "I can't log in, it keeps saying invalid password."),
        ("Help", "I cannot log in to my account, please help."),
        ("Can not log in anymore", "My login stopped working."),
    ],
    "en-address": [
        ("Change delivery address", "I moved, can you change the address on my order?"),
        ("Change of address", "Please change the delivery address for order 7712."),
        ("Wrong delivery address", "I entered the wrong address, can you change it?"),
        ("Update my shipping address", "Please update the address on my order."),
        ("change my address", "Can I still change the delivery address?"),
    ],
    "en-invoice": [
        ("Invoice copy", "Could you send me a copy of the invoice for order 3321?"),
        ("Need an invoice", "I need an invoice for my company."),
        ("Invoice for my order", "Please send the invoice as PDF."),
        ("Missing invoice", "I did not receive an invoice with my order."),
        ("Copy of invoice please", "Our accounting needs a copy of the invoice."),
    ],
    "de-bestellung": [
        ("Wo ist meine Bestellung?", "Hallo, ich habe vor einer Woche bestellt und nichts kam an."),
        ("wo bleibt meine Bestellung", "Meine Bestellung 5512 ist noch nicht da."),
        ("Bestellung nicht angekommen", "Ich habe am Montag bestellt, wo ist das Paket?"),
        ("AW: Wo ist meine Bestellung? [#3312]", "Immer noch nichts angekommen."),
        ("Meine Bestellung ist noch nicht angekommen", "Seit zehn Tagen warte ich."),
        ("Frage", "Wo ist meine Bestellung? Ich habe letzte Woche bezahlt."),
        ("Bestellung noch nicht geliefert", "Die Lieferung sollte gestern kommen."),
    ],
    "de-rueckerstattung": [
        ("Rückerstattung", "Ich möchte eine Rückerstattung für meinen Kauf."),
        ("Rückerstattung beantragen", "Bitte erstatten Sie Bestellung 4431, der Artikel war defekt."),
        ("Wann bekomme ich meine Rückerstattung?", "Ich habe die Ware zurückgeschickt."),
        ("Rueckerstattung fehlt", "Die Rücksendung ist angekommen, aber kein Geld."),
        ("AW: Rückerstattung [#2211]", "Gibt es Neuigkeiten zur Rückerstattung?"),
        ("Rückerstattung nicht erhalten", "Noch keine Rückerstattung auf meinem Konto."),
    ],
    "de-passwort": [
        ("Passwort vergessen", "Ich habe mein Passwort vergessen, wie kann ich es zurücksetzen?"),
        ("Login funktioniert nicht", "Ich kann mich nicht mehr anmelden."),
        ("Kann mich nicht einloggen", "Das Passwort wird nicht akzeptiert."),
        ("passwort vergessen!", "Bitte helfen Sie mir, ich komme nicht in mein Konto."),
        ("Anmeldung nicht möglich", "Ich kann mich nicht anmelden, Passwort falsch."),
        ("Hilfe", "Ich habe mein Passwort vergessen."),
    ],
    "de-rechnung": [
        ("Rechnung", "Können Sie mir die Rechnung für Bestellung 2231 schicken?"),
        ("Rechnung fehlt", "Ich habe keine Rechnung erhalten."),
        ("Rechnungskopie", "Bitte senden Sie mir eine Kopie der Rechnung."),
        ("Brauche eine Rechnung", "Für meine Firma brauche ich eine Rechnung."),
        ("Rechnung als PDF", "Bitte die Rechnung als PDF schicken."),
    ],
    "fr-commande": [
        ("Où est ma commande ?", "Bonjour, j'ai commandé il y a une semaine et rien reçu."),
        ("ou est ma commande", "Ma commande 7781 n'est pas arrivée."),
        ("Commande non reçue", "J'ai passé commande lundi, toujours rien."),
        ("RE: Où est ma commande [#4412]", "Toujours pas de colis."),
        ("Ma commande n'est pas arrivée", "Cela fait dix jours que j'attends."),
        ("Question", "Où est ma commande ? J'ai payé mardi dernier."),
        ("Commande toujours pas livrée", "La livraison était prévue hier."),
    ],
    "fr-remboursement": [
        ("Remboursement", "Je voudrais être remboursé de mon dernier achat."),
        ("Demande de remboursement", "Merci de rembourser la commande 3312, l'article est cassé."),
        ("Quand serai-je remboursé ?", "J'ai renvoyé l'article il y a deux semaines."),
        ("remboursement svp", "Retour reçu mais pas de remboursement."),
        ("TR: Demande de remboursement [#5123]", "Des nouvelles de mon remboursement ?"),
        ("Remboursement non reçu", "Toujours pas de remboursement sur mon compte."),
    ],
    "fr-mot-de-passe": [
        ("Mot de passe oublié", "J'ai oublié mon mot de passe, comment le réinitialiser ?"),
        ("Impossible de me connecter", "Je n'arrive plus à me connecter à mon compte."),
        ("mot de passe oublie", "Comment changer mon mot de passe ?"),
        ("Problème de connexion", "Impossible de me connecter, mot de passe incorrect."),
        ("Bonjour", "J'ai oublié mon mot de passe."),
        ("Je n'arrive pas à me connecter", "Le site refuse mon mot de passe."),
    ],
    "fr-facture": [
        ("Facture", "Pouvez-vous m'envoyer la facture de la commande 1123 ?"),
        ("Facture manquante", "Je n'ai pas reçu de facture."),
        ("Demande de facture", "Merci de m'envoyer une copie de la facture."),
        ("Copie de facture", "Notre comptabilité a besoin de la facture."),
        ("Besoin d'une facture", "Il me faut une facture pour mon entreprise."),
    ],
}

ONE_OFFS: list[tuple[str, str]] = [
    ("Partnership proposal", "We are a marketing agency and would like to work with you."),
    ("Compliment for your team", "Just wanted to say thanks, great service!"),
    ("Bulk discount for schools?", "We want to buy 200 units for our school district."),
    ("Job application", "Please find attached my CV."),
    ("Presseanfrage", "Wir schreiben einen Artikel über nachhaltige Mode."),
    ("Lob", "Vielen Dank für die schnelle Lieferung!"),
    ("Stage d'été", "Je cherche un stage pour cet été."),
    ("Proposition de collaboration", "Nous sommes une agence de design."),
    ("Gift wrapping available?", "Can you wrap a present for my mother's birthday?"),
    ("Größe der Jacke", "Fällt die Jacke eher klein oder groß aus?"),
]


def labelled_mails() -> list[tuple[str, str, str | None]]:
    """(subject, first words, group or None) for every mail of the set."""
    mails = [(subject, words, group) for group, items in GROUPS.items() for subject, words in items]
    return mails + [(subject, words, None) for subject, words in ONE_OFFS]
