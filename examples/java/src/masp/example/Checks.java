package masp.example;

/**
 * The runner of the self-checks ({@link SelfTest}, {@link SpecExamples}): one line per check,
 * {@code ok} or {@code FAIL} with the reason, then a total and the exit status.
 */
final class Checks {
    /** One check: returns normally if it holds, throws otherwise. */
    interface Check {
        void run() throws Exception;
    }

    private static int failures;

    private Checks() {
    }

    static void check(String name, Check c) {
        try {
            c.run();
            System.out.println("ok   " + name);
        } catch (Throwable t) {
            failures++;
            System.out.println("FAIL " + name + ": " + t);
        }
    }

    /** Prints the total and exits: 0 if every check held, 1 otherwise. */
    static void exit() {
        System.out.println(failures == 0 ? "all passed" : failures + " failed");
        System.exit(failures == 0 ? 0 : 1);
    }
}
