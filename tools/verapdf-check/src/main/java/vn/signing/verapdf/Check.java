package vn.signing.verapdf;

import java.io.FileInputStream;
import java.io.InputStream;
import java.util.TreeMap;
import org.verapdf.gf.foundry.VeraGreenfieldFoundryProvider;
import org.verapdf.pdfa.Foundries;
import org.verapdf.pdfa.PDFAParser;
import org.verapdf.pdfa.PDFAValidator;
import org.verapdf.pdfa.flavours.PDFAFlavour;
import org.verapdf.pdfa.results.TestAssertion;
import org.verapdf.pdfa.results.ValidationResult;

/**
 * Checks PDF/A conformance with veraPDF. Arguments: [--flavour 1b|2b|3b|...] FILE.pdf...
 * Prints one JSON line per file: {"file", "flavour", "compliant", "failed": ["6.3.5-3", ...],
 * "messages": {"6.3.5-3": "..."}} (the failed rules, clause-testNumber, with veraPDF's message
 * for the first failure of each) or {"file", "error"}. Exit 0 all compliant, 1 otherwise.
 * Without --flavour, the flavour is the one the file's XMP metadata claims.
 */
public final class Check {
    private Check() {}

    private static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    public static void main(String[] args) throws Exception {
        VeraGreenfieldFoundryProvider.initialise();
        PDFAFlavour forced = null;
        boolean all = true;
        for (int i = 0; i < args.length; i++) {
            if (args[i].equals("--flavour")) {
                forced = PDFAFlavour.fromString(args[++i]);
                continue;
            }
            String file = args[i];
            try (InputStream in = new FileInputStream(file);
                 PDFAParser parser = forced == null
                         ? Foundries.defaultInstance().createParser(in)
                         : Foundries.defaultInstance().createParser(in, forced)) {
                PDFAFlavour flavour = parser.getFlavour();
                PDFAValidator validator = Foundries.defaultInstance().createValidator(flavour, false);
                ValidationResult result = validator.validate(parser);
                TreeMap<String, String> failed = new TreeMap<>();
                for (TestAssertion a : result.getTestAssertions()) {
                    if (a.getStatus() == TestAssertion.Status.FAILED) {
                        failed.putIfAbsent(
                                a.getRuleId().getClause() + "-" + a.getRuleId().getTestNumber(),
                                a.getMessage() + " @ " + a.getLocation().getContext());
                    }
                }
                all &= result.isCompliant();
                StringBuilder out = new StringBuilder("{\"file\":").append(quote(file));
                out.append(",\"flavour\":").append(quote(flavour.getId()));
                out.append(",\"compliant\":").append(result.isCompliant());
                out.append(",\"failed\":[");
                boolean first = true;
                for (String f : failed.keySet()) {
                    if (!first) out.append(',');
                    out.append(quote(f));
                    first = false;
                }
                out.append("],\"messages\":{");
                first = true;
                for (var e : failed.entrySet()) {
                    if (!first) out.append(',');
                    out.append(quote(e.getKey())).append(':').append(quote(e.getValue()));
                    first = false;
                }
                System.out.println(out.append("}}"));
            } catch (Exception e) {
                all = false;
                StringBuilder where = new StringBuilder(String.valueOf(e));
                StackTraceElement[] trace = e.getStackTrace();
                for (int k = 0; k < Math.min(6, trace.length); k++) where.append(" at ").append(trace[k]);
                System.out.println("{\"file\":" + quote(file) + ",\"error\":" + quote(where.toString()) + "}");
            }
        }
        System.exit(all ? 0 : 1);
    }
}
